"""tunefleet's own inventory format: one mapping of hosts, optional defaults and groups.

    defaults: {user: root, key: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts}
    hosts:
      db1: {host: 192.0.2.10, port: 22, user: tuner, key: ~/.ssh/tuner}
    groups:
      db: [db1]

Relative key and known_hosts paths are resolved against the inventory file's folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from controller.errors import InventoryError
from controller.fleet.inventory.hostvars import port_number
from controller.fleet.inventory.model import HostSpec, Inventory

TOP_KEYS = {"defaults", "hosts", "groups"}
_FIELDS = {"host", "port", "user", "key", "known_hosts", "python", "sudo", "become_user", "ray_resource"}


def is_own_format(data) -> bool:
    """Top-level keys only from {defaults, hosts, groups}, and `hosts` not shaped like an Ansible group."""
    if not isinstance(data, Mapping) or "hosts" not in data or not set(data) <= TOP_KEYS:
        return False
    hosts = data["hosts"]
    return not (isinstance(hosts, Mapping) and hosts and set(hosts) <= {"hosts", "children", "vars"})


def read_own(data: Mapping, base: Path, source: str) -> Inventory:
    defaults = data.get("defaults") or {}
    hosts_raw = data.get("hosts") or {}
    groups_raw = data.get("groups") or {}
    if not all(isinstance(x, Mapping) for x in (defaults, hosts_raw, groups_raw)):
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
        if not isinstance(fields, Mapping):
            raise InventoryError(f"{source}: host {name} must be a mapping like {{host: 192.0.2.10}}")
        member_of = tuple(g for g, m in groups.items() if str(name) in m)
        hosts[str(name)] = _host(str(name), {**defaults, **fields}, base, source, member_of)
    grouped = {h for m in groups.values() for h in m}
    members = {"all": list(hosts), "ungrouped": [h for h in hosts if h not in grouped], **groups}
    children = {"all": ["ungrouped", *groups], "ungrouped": [], **{g: [] for g in groups}}
    return Inventory(hosts, members, children, source=source, reader="tunefleet")


def _host(name: str, fields: Mapping, base: Path, source: str, groups: tuple[str, ...]) -> HostSpec:
    unknown = set(fields) - _FIELDS
    if unknown:
        raise InventoryError(f"{source}: host {name}: unknown field(s) {', '.join(sorted(unknown))}")
    port = fields.get("port")
    if port is not None:
        port = port_number(port, f"{source}: host {name}: port")
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
        become_user=_str(fields.get("become_user")),
        groups=groups,
        ray_resource=_str(fields.get("ray_resource")),
    )


def _str(v) -> str | None:
    return None if v is None else str(v)


def _path(v, base: Path) -> str | None:
    if v is None:
        return None
    p = Path(str(v)).expanduser()
    return str(p if p.is_absolute() else base / p)
