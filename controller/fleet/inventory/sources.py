"""Ansible's static inventory formats read into a Graph: YAML (the `yaml` plugin) and INI (the
`ini` plugin), with the same acceptance rules, so a file means here what it means to Ansible.

What cannot be resolved without Ansible itself raises NeedsAnsible naming the feature.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Mapping

import yaml

from controller.errors import InventoryError
from controller.fleet.inventory.graph import Graph
from controller.fleet.inventory.hostnames import parse_host_key
from controller.fleet.inventory.hostvars import UNSAFE

# Ansible's ini plugin: [group] or [group:type], then an optional comment
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")


class NeedsAnsible(InventoryError):
    """A feature only Ansible can resolve exactly (vault, templates, plugins, scripts)."""

    def __init__(self, source: str, feature: str):
        super().__init__(f"{source}: {feature} is beyond the built-in inventory reader; "
                         f"install ansible-core (pip install ansible-core) to read it as Ansible does")


class Vaulted(str):
    """A `!vault` value: ciphertext Ansible would decrypt."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader plus Ansible's two tags."""


_Loader.add_constructor("!vault", lambda loader, node: Vaulted(loader.construct_scalar(node)))
# An !unsafe value is never rendered; kept in the shape `ansible-inventory --list` gives it
_Loader.add_constructor("!unsafe", lambda loader, node: {UNSAFE: loader.construct_scalar(node)})


def load_yaml(text: str, source: str):
    if text.lstrip().startswith("$ANSIBLE_VAULT"):
        raise NeedsAnsible(source, "a vault-encrypted file")
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise InventoryError(f"{source}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None


def check_resolvable(value, source: str) -> None:
    """Refuse values whose meaning Ansible decides at run time: vault ciphertext and Jinja2."""
    if isinstance(value, Vaulted):
        raise NeedsAnsible(source, "a !vault value")
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        raise NeedsAnsible(source, f"the Jinja2 template {value!r}")
    if isinstance(value, Mapping) and set(value) != {UNSAFE}:
        for v in value.values():
            check_resolvable(v, source)
    elif isinstance(value, list):
        for v in value:
            check_resolvable(v, source)


def read_yaml(graph: Graph, data, source: str) -> None:
    """Ansible's yaml inventory plugin: every top-level key is a group."""
    if data is None:
        return  # an empty file: Ansible's yaml plugin refuses it, its ini plugin reads no host
    if not data or not isinstance(data, Mapping):
        raise InventoryError(f"{source}: a YAML inventory must be a mapping of groups, got {type(data).__name__}")
    if data.get("plugin"):
        raise NeedsAnsible(source, f"the inventory plugin configuration (plugin: {data['plugin']})")
    for name, body in data.items():
        _yaml_group(graph, name, body, source)


def _yaml_group(graph: Graph, name, body, source: str) -> str | None:
    if not isinstance(body, (Mapping, type(None))):
        return None  # Ansible skips it with a warning
    group = graph.add_group(name).name
    if body is None:
        return group
    body = dict(body)
    for section in ("vars", "children", "hosts"):
        if isinstance(body.get(section), str):  # `hosts: web1` means {web1: null}
            body[section] = {body[section]: None}
        if not isinstance(body.get(section), (Mapping, type(None))):
            raise InventoryError(f"{source}: group {group}: '{section}' must be a mapping "
                                 f"(Ansible refuses a {type(body[section]).__name__} here)")
    for key, value in body.items():
        if not isinstance(value, Mapping):
            continue  # null sections, and non-mapping keys Ansible skips with a warning
        if key == "vars":
            for var, v in value.items():
                check_resolvable(v, source)
                graph.set_group_var(group, str(var), v)
        elif key == "children":
            for child, child_body in value.items():
                sub = _yaml_group(graph, child, child_body, source)
                if sub is not None:
                    _add_child(graph, group, sub, source)
        elif key == "hosts":
            for pattern, hvars in value.items():
                _add_hosts(graph, pattern, hvars or {}, group, source)
    return group


def _add_child(graph: Graph, parent: str, child: str, where: str) -> None:
    try:
        graph.add_child(parent, child)
    except InventoryError as e:
        raise InventoryError(f"{where}: {e}") from None


def _add_hosts(graph: Graph, pattern, hvars, group: str, source: str) -> None:
    if not isinstance(hvars, Mapping):
        raise InventoryError(f"{source}: host {pattern}: its variables must be a mapping, got {hvars!r}")
    names, port = parse_host_key(pattern)
    for name in names:
        host = graph.add_host(name, group, port)
        for var, v in hvars.items():
            check_resolvable(v, source)
            host.vars[str(var)] = v


def read_ini(graph: Graph, text: str, source: str) -> None:
    """Ansible's ini inventory plugin: [group], [group:vars], [group:children], host lines with k=v."""
    group, state = "ungrouped", "hosts"
    pending: dict[str, tuple[str, list[str]]] = {}  # undeclared group -> (why, parents)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        where = f"{source}:{lineno}"
        section = _SECTION.match(line)
        if section:
            group, state = section.group(1), section.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise InventoryError(f"{where}: section [{group}:{state}] has unknown type {state!r}")
            if group not in graph.groups:
                if state == "vars" and group not in pending:
                    pending[group] = ("vars", [])
                graph.add_group(group)
            if group in pending and state != "vars":
                _resolve_pending(graph, group, pending, source)
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(f"{where}: invalid section {line!r} (no spaces allowed inside [...])")
        if state == "hosts":
            _ini_hosts(graph, line, group, where)
        elif state == "vars":
            key, eq, value = line.partition("=")
            if not eq:
                raise InventoryError(f"{where}: expected key=value, got {line!r}")
            value = _ini_value(value.strip())
            check_resolvable(value, where)
            graph.set_group_var(group, key.strip(), value)
        else:
            child = line.split("#", 1)[0].strip()
            if not child or any(c.isspace() or c in ":]" for c in child):
                raise InventoryError(f"{where}: expected a group name, got {line!r}")
            if child in graph.groups:
                _add_child(graph, group, child, where)
            else:
                pending.setdefault(child, ("children", []))[1].append(group)
    for name, (why, parents) in pending.items():
        if why == "vars":
            raise InventoryError(f"{source}: section [{name}:vars] is for a group that is never defined")
        raise InventoryError(f"{source}: section [{parents[-1]}:children] names the undefined group '{name}'")


def _resolve_pending(graph: Graph, group: str, pending: dict, source: str) -> None:
    why, parents = pending.pop(group)
    if why == "children":
        for parent in parents:
            _add_child(graph, parent, group, source)
            if parent in pending and pending[parent][0] == "children":
                _resolve_pending(graph, parent, pending, source)


def _ini_hosts(graph: Graph, line: str, group: str, where: str) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as e:
        raise InventoryError(f"{where}: cannot parse host line: {e}") from None
    if not tokens:
        return
    if tokens[0].endswith(":") or tokens[0] == "---":
        raise InventoryError(f"{where}: invalid host {tokens[0]!r} (a YAML file read as INI?)")
    hvars = {}
    for token in tokens[1:]:
        key, eq, value = token.partition("=")
        if not eq:
            raise InventoryError(f"{where}: expected key=value after the host name, got {token!r}")
        hvars[key] = _ini_value(value)
    _add_hosts(graph, tokens[0], hvars, group, where)


def _ini_value(text: str):
    """Ansible's INI values: Python literals where they parse (2222 -> int, True -> bool), else text."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return text
    if value is ... or isinstance(value, complex):
        return str(value) if value is not ... else "..."
    if isinstance(value, (set, tuple)):
        return list(value)
    return value
