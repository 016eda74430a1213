"""Inventories: tunefleet's own YAML and Ansible's YAML inventory format.

Our format::

    defaults: {user: root, key: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts}
    hosts:
      db1: {host: 192.0.2.10, port: 22, user: tuner, key: ~/.ssh/tuner}
    groups:
      db: [db1]

Ansible's::

    all:
      vars: {ansible_user: tuner}
      hosts: {db1: {ansible_host: 192.0.2.10}}
      children:
        db: {hosts: {db1: {}}}

Relative key and known_hosts paths are resolved against the inventory file's folder.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from controller.errors import InventoryError

# Our keys and their Ansible spellings.
_ANSIBLE_KEYS = {
    "ansible_host": "host",
    "ansible_port": "port",
    "ansible_user": "user",
    "ansible_ssh_private_key_file": "key",
    "ansible_python_interpreter": "python",
}
_OWN_KEYS = {"host", "port", "user", "key", "known_hosts", "python", "sudo"}


@dataclass(frozen=True)
class HostSpec:
    """How to reach one host. Unset fields fall back to ~/.ssh/config, then to ssh's defaults."""

    name: str
    host: str
    port: int | None = None
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    python: str | None = None
    sudo: bool | None = None  # become: None = use sudo -n when the SSH user is not root
    become_user: str | None = None  # whom sudo runs the agent as (default root)
    ssh_args: tuple[str, ...] = ()  # extra ssh(1) command-line arguments (ansible_ssh_common_args, ...)
    groups: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port or 22}"


@dataclass
class Inventory:
    hosts: dict[str, HostSpec]
    groups: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def select(self, limit: str | None) -> list[HostSpec]:
        """Hosts matching an Ansible-style limit: names, groups, globs; ',' or ':' separated; '!x' excludes."""
        if not limit:
            return list(self.hosts.values())
        chosen: list[str] = []
        excluded: set[str] = set()
        for raw in limit.replace(":", ",").split(","):
            term = raw.strip()
            if not term:
                continue
            negate = term.startswith("!")
            term = term.lstrip("!")
            names = self._expand(term)
            if not names:
                raise InventoryError(
                    f"--limit '{term}' matches no host or group "
                    f"(hosts: {', '.join(self.hosts)}; groups: {', '.join(self.groups) or 'none'})"
                )
            if negate:
                excluded.update(names)
            else:
                chosen.extend(n for n in names if n not in chosen)
        if not chosen:  # only exclusions given: start from everything
            chosen = list(self.hosts)
        picked = [self.hosts[n] for n in chosen if n not in excluded]
        if not picked:
            raise InventoryError(f"--limit '{limit}' leaves no host")
        return picked

    def _expand(self, term: str) -> list[str]:
        if term in ("all", "*"):
            return list(self.hosts)
        if term in self.hosts:
            return [term]
        if term in self.groups:
            return list(self.groups[term])
        names = [n for n in self.hosts if fnmatch.fnmatchcase(n, term)]
        for g in self.groups:
            if fnmatch.fnmatchcase(g, term):
                names.extend(n for n in self.groups[g] if n not in names)
        return names


def load_inventory(path: str | os.PathLike) -> Inventory:
    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise InventoryError(f"{path}: no such inventory file")
    except (OSError, UnicodeDecodeError) as e:
        raise InventoryError(f"{path}: cannot read: {e}")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise InventoryError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}")
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: expected a mapping with 'hosts:' or Ansible's 'all:' at the top")
    base = p.resolve().parent
    if "all" in data and "hosts" not in data:
        inv = _from_ansible(data["all"], base, str(path))
    elif "hosts" in data:
        inv = _from_own(data, base, str(path))
    else:
        raise InventoryError(f"{path}: expected 'hosts:' (tunefleet format) or 'all:' (Ansible format) at the top")
    if not inv.hosts:
        raise InventoryError(f"{path}: the inventory names no host")
    inv.source = str(path)
    return inv


def _host(name: str, fields: dict, base: Path, source: str, groups: tuple[str, ...] = ()) -> HostSpec:
    unknown = set(fields) - _OWN_KEYS
    if unknown:
        raise InventoryError(f"{source}: host {name}: unknown field(s) {', '.join(sorted(unknown))}")
    port = fields.get("port")
    if port is not None:
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise InventoryError(f"{source}: host {name}: port must be a number, got {port!r}")
        if not 0 < port < 65536:
            raise InventoryError(f"{source}: host {name}: port {port} out of range")
    sudo = fields.get("sudo")
    if sudo is not None and not isinstance(sudo, bool):
        raise InventoryError(f"{source}: host {name}: sudo must be true or false")
    return HostSpec(
        name=name,
        host=str(fields.get("host") or name),
        port=port,
        user=_str(fields.get("user")),
        key=_path(fields.get("key"), base),
        known_hosts=_path(fields.get("known_hosts"), base),
        python=_str(fields.get("python")),
        sudo=sudo,
        groups=groups,
    )


def _str(v) -> str | None:
    return None if v is None else str(v)


def _path(v, base: Path) -> str | None:
    if v is None:
        return None
    p = Path(str(v)).expanduser()
    return str(p if p.is_absolute() else base / p)


def _from_own(data: dict, base: Path, source: str) -> Inventory:
    defaults = data.get("defaults") or {}
    hosts_raw = data.get("hosts") or {}
    groups_raw = data.get("groups") or {}
    if not isinstance(defaults, dict) or not isinstance(hosts_raw, dict) or not isinstance(groups_raw, dict):
        raise InventoryError(f"{source}: 'defaults', 'hosts' and 'groups' must be mappings")
    groups: dict[str, list[str]] = {}
    for g, members in groups_raw.items():
        if not isinstance(members, list):
            raise InventoryError(f"{source}: group {g} must be a list of host names")
        missing = [m for m in members if m not in hosts_raw]
        if missing:
            raise InventoryError(f"{source}: group {g} names unknown host(s) {', '.join(map(str, missing))}")
        groups[str(g)] = [str(m) for m in members]
    hosts = {}
    for name, fields in hosts_raw.items():
        fields = fields or {}
        if isinstance(fields, str):
            fields = {"host": fields}
        if not isinstance(fields, dict):
            raise InventoryError(f"{source}: host {name} must be a mapping like {{host: 192.0.2.10}}")
        member_of = tuple(g for g, m in groups.items() if name in m)
        hosts[str(name)] = _host(str(name), {**defaults, **fields}, base, source, member_of)
    return Inventory(hosts, groups)


def _from_ansible(root, base: Path, source: str) -> Inventory:
    if not isinstance(root, dict):
        raise InventoryError(f"{source}: 'all' must be a mapping")
    fields: dict[str, dict] = {}     # inherited from all: and groups, later groups win
    own: dict[str, dict] = {}        # the host's own variables win over any group's (as in Ansible)
    groups: dict[str, list[str]] = {}

    def walk(node: dict, group: str | None, inherited: dict) -> list[str]:
        node = node or {}
        scope = {**inherited, **_translate(node.get("vars") or {})}
        members: list[str] = []
        for name, hvars in (node.get("hosts") or {}).items():
            name = str(name)
            fields[name] = {**fields.get(name, {}), **scope}
            own[name] = {**own.get(name, {}), **_translate(hvars or {})}
            members.append(name)
        for child, sub in (node.get("children") or {}).items():
            members.extend(m for m in walk(sub, str(child), scope) if m not in members)
        if group is not None:
            groups[group] = members
        return members

    walk(root, None, {})
    hosts = {
        n: _host(n, {**f, **own[n]}, base, source, tuple(g for g, m in groups.items() if n in m))
        for n, f in fields.items()
    }
    return Inventory(hosts, groups)


def _translate(vars_: dict) -> dict:
    """Ansible variable names -> ours; other variables are ignored."""
    return {_ANSIBLE_KEYS[k]: v for k, v in vars_.items() if k in _ANSIBLE_KEYS}
