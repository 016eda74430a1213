"""The built-in Ansible inventory reader, for machines without ansible-core.

It covers the static forms exactly — INI and YAML files, inventory directories, group_vars/ and
host_vars/ beside the inventory, host ranges, `host:port`, Ansible's variable precedence — and
refuses (NeedsAnsible) what only Ansible can resolve: vault, Jinja2 templates, inventory
plugins, dynamic inventory scripts. The result has the shape of `ansible-inventory --list`, so
it goes through the same conversion as Ansible's own answer.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

from controller.errors import InventoryError
from controller.fleet.inventory.graph import Graph
from controller.fleet.inventory.hostnames import split_port
from controller.fleet.inventory.sources import NeedsAnsible, check_resolvable, load_yaml, read_ini, read_yaml

YAML_EXTS = (".yml", ".yaml", ".json")
VARS_EXTS = ("", ".yml", ".yaml", ".json")
# Ansible's INVENTORY_IGNORE_EXTS and INVENTORY_IGNORE_PATTERNS defaults
_IGNORE_EXTS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry")
_IGNORE_NAMES = ("group_vars", "host_vars")


# Ansible settings that change what an inventory means: (ansible.cfg section, key) pairs and env names
_SETTINGS = {
    "hash_behaviour": ([("defaults", "hash_behaviour")], "ANSIBLE_HASH_BEHAVIOUR"),
    "precedence": ([("defaults", "precedence")], "ANSIBLE_PRECEDENCE"),
    "inventory ignore_extensions": ([("defaults", "inventory_ignore_extensions"), ("inventory", "ignore_extensions")],
                                    "ANSIBLE_INVENTORY_IGNORE"),
    "inventory ignore_patterns": ([("defaults", "inventory_ignore_patterns"), ("inventory", "ignore_patterns")],
                                  "ANSIBLE_INVENTORY_IGNORE_REGEX"),
    "inventory enable_plugins": ([("inventory", "enable_plugins")], "ANSIBLE_INVENTORY_ENABLED"),
    "force_valid_group_names": ([("defaults", "force_valid_group_names")], "ANSIBLE_TRANSFORM_INVALID_GROUP_CHARS"),
}


def _check_settings() -> None:
    """The built-in reader assumes Ansible's defaults: refuse when the user's Ansible changes them."""
    candidates = [os.environ.get("ANSIBLE_CONFIG"), "ansible.cfg", "~/.ansible.cfg", "/etc/ansible/ansible.cfg"]
    cfg_file = next((Path(c).expanduser() for c in candidates if c and Path(c).expanduser().is_file()), None)
    cfg = configparser.ConfigParser(interpolation=None)
    if cfg_file is not None:
        try:
            cfg.read(cfg_file)
        except configparser.Error as e:
            raise InventoryError(f"{cfg_file}: cannot read: {e}".splitlines()[0]) from None
    for name, (keys, env) in _SETTINGS.items():
        if env in os.environ:
            raise NeedsAnsible(env, f"the Ansible setting {name}")
        if any(cfg.has_option(section, key) for section, key in keys):
            raise NeedsAnsible(str(cfg_file), f"the Ansible setting {name}")


def list_inventory(path: Path) -> dict:
    """Read an inventory file or directory like ansible-inventory does; return its --list data."""
    _check_settings()
    graph = Graph()
    if path.is_dir():
        files = _directory_sources(path)
        if not files:
            raise InventoryError(f"{path}: the inventory directory holds no inventory file")
        for f in files:
            _read_file(graph, f)
    else:
        _read_file(graph, path)
    graph.reconcile()
    _read_vars_files(graph, path if path.is_dir() else path.parent)
    return graph.listing()


def list_host_list(text: str) -> dict:
    """Ansible's host_list source, `-i 'web1,web2:2222,'`: names (and ports), no ranges, no groups."""
    graph = Graph()
    for item in (i.strip() for i in text.split(",")):
        if item:
            name, port = split_port(item)
            graph.add_host(name if "[" not in name else item, "ungrouped", port if "[" not in name else None)
    graph.reconcile()
    return graph.listing()


def _directory_sources(folder: Path) -> list[Path]:
    """Ansible reads a directory's entries sorted by name, recursing into sub-directories."""
    found = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name in _IGNORE_NAMES or entry.name.endswith(_IGNORE_EXTS):
            continue
        if entry.is_dir():
            found.extend(_directory_sources(entry))
        else:
            found.append(entry)
    return found


def _read_file(graph: Graph, path: Path) -> None:
    source = str(path)
    if os.access(path, os.X_OK):
        raise NeedsAnsible(source, "a dynamic inventory script (an executable file)")
    if path.suffix == ".toml":
        raise NeedsAnsible(source, "a TOML inventory")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InventoryError(f"{source}: cannot read: {e}") from None
    if path.suffix in YAML_EXTS:
        read_yaml(graph, load_yaml(text, source), source)
    elif path.suffix == "" and _yaml_inventory(text, source) is not None:
        read_yaml(graph, _yaml_inventory(text, source), source)
    else:
        read_ini(graph, text, source)


def _yaml_inventory(text: str, source: str):
    """A file without extension is YAML to Ansible when it parses as a mapping; else it is INI."""
    try:
        data = load_yaml(text, source)
    except NeedsAnsible:
        raise
    except InventoryError:
        return None
    return data if isinstance(data, Mapping) and data else None


def _read_vars_files(graph: Graph, base: Path) -> None:
    """group_vars/<group> and host_vars/<host> beside the inventory (the host_group_vars plugin)."""
    for folder, entities in (("group_vars", graph.groups.values()), ("host_vars", graph.hosts.values())):
        if not (base / folder).is_dir():
            continue
        for entity in entities:
            for f in _vars_files(base / folder, entity.name):
                data = load_yaml(f.read_text(), str(f)) if f.stat().st_size else None
                if data is None:
                    continue
                if not isinstance(data, Mapping):
                    raise InventoryError(f"{f}: a variables file must be a mapping, got {type(data).__name__}")
                check_resolvable(data, str(f))
                entity.file_vars.update({str(k): v for k, v in data.items()})


def _vars_files(folder: Path, name: str) -> list[Path]:
    """Ansible's DataLoader.find_vars_files: name, name.yml, name.yaml, name.json, or a folder."""
    found = []
    for ext in VARS_EXTS:
        p = folder / f"{name}{ext}"
        if p.is_dir() and ext == "":
            found.extend(_vars_dir(p))
        elif p.is_file():
            found.append(p)
    return found


def _vars_dir(folder: Path) -> list[Path]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found.extend(_vars_dir(entry))
        elif entry.suffix in VARS_EXTS:
            found.append(entry)
    return found
