"""Ansible's resolved host variables -> HostSpec, and `ansible-inventory --list` data -> Inventory.

The variable names and which spelling wins follow Ansible's own table (constants.py
MAGIC_VARIABLE_MAPPING): when both are set, the older `ansible_ssh_*` name wins, as it does in
Ansible. Booleans follow ansible.module_utils.parsing.convert_bool.
"""

from __future__ import annotations

import os
import shlex

from controller.errors import InventoryError
from controller.fleet.inventory.model import HostSpec, Inventory

# field -> variable names, the first one set wins
CONNECTION_VARS = {
    "host": ("ansible_ssh_host", "ansible_host"),
    "port": ("ansible_ssh_port", "ansible_port"),
    "user": ("ansible_ssh_user", "ansible_user"),
    "key": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "python": ("ansible_python_interpreter",),
    "sudo": ("ansible_become",),
    "become_user": ("ansible_become_user",),
    "ray_resource": ("tunefleet_ray_resource",),
}
SSH_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")  # in the order ssh gets them
USED_VARS = frozenset(v for names in CONNECTION_VARS.values() for v in names) | {*SSH_ARG_VARS, "ansible_connection"}
# ansible_connection values that mean "over SSH"; tunefleet cannot reach a host any other way
SSH_CONNECTIONS = {"ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh",
                   "ansible.legacy.ssh", "ansible.legacy.paramiko_ssh"}

UNSAFE = "__ansible_unsafe"
_TRUE = {"y", "yes", "on", "1", "true", "t", "1.0"}
_FALSE = {"n", "no", "off", "0", "false", "f", "0.0"}


def _first(hostvars: dict, names: tuple[str, ...]):
    for n in names:
        if hostvars.get(n) is not None:
            return n, plain(hostvars[n])
    return None, None


def plain(value):
    """`ansible-inventory --list` writes an !unsafe value as {"__ansible_unsafe": text}: the text."""
    if isinstance(value, dict) and set(value) == {UNSAFE}:
        return value[UNSAFE]
    return value


def _bool(host: str, var: str, value) -> bool:
    text = str(value).strip().lower() if not isinstance(value, bool) else str(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InventoryError(f"host {host}: {var} must be a boolean (true/false/yes/no), got {value!r}")


def port_number(value, label: str) -> int:
    """An inventory port as an int in 1..65535; `label` names it in the error."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise InventoryError(f"{label} must be a number, got {value!r}") from None
    if not 0 < port < 65536:
        raise InventoryError(f"{label} {port} out of range")
    return port


def host_from_vars(name: str, hostvars: dict, groups: tuple[str, ...] = ()) -> HostSpec:
    """One host's merged variables (as Ansible resolves them) -> how tunefleet reaches it."""
    fields: dict = {}
    for field_name, names in CONNECTION_VARS.items():
        var, value = _first(hostvars, names)
        if var is None:
            continue
        if isinstance(value, (dict, list)):
            raise InventoryError(f"host {name}: {var} must be a single value, got {type(value).__name__}")
        if field_name == "port":
            value = port_number(value, f"host {name}: {var}")
        elif field_name == "sudo":
            value = _bool(name, var, value)
        elif field_name == "key":
            value = os.path.abspath(os.path.expanduser(str(value)))
        else:
            value = str(value)
        fields[field_name] = value
    ssh_args: list[str] = []
    for var in SSH_ARG_VARS:
        value = plain(hostvars.get(var))
        if value:
            try:
                ssh_args.extend(shlex.split(str(value)))
            except ValueError as e:
                raise InventoryError(f"host {name}: {var}: {e}") from None
    return HostSpec(name=name, host=fields.pop("host", name), ssh_args=tuple(ssh_args), groups=groups, **fields)


def from_listing(data: dict, source: str, reader: str) -> Inventory:
    """`ansible-inventory --list` JSON -> Inventory. Hosts come in Ansible's order for `all`."""
    if not isinstance(data, dict) or not isinstance(data.get("_meta", {}), dict):
        raise InventoryError(f"{source}: not an inventory listing")
    hostvars = data.get("_meta", {}).get("hostvars", {}) or {}
    members: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    for group, body in data.items():
        if group == "_meta" or not isinstance(body, dict):
            continue
        members[group] = [str(h) for h in body.get("hosts", []) or []]
        children[group] = [str(c) for c in body.get("children", []) or []]
    for group in [c for cs in list(children.values()) for c in cs]:
        members.setdefault(group, [])
        children.setdefault(group, [])
    members.setdefault("all", [])
    children.setdefault("all", [])
    inv = Inventory({}, members, children, source=source, reader=reader)
    order = inv.group_hosts("all")
    order += [h for h in hostvars if h not in order]
    memberships = {g: set(inv.group_hosts(g)) for g in inv.children if g not in ("all", "ungrouped")}
    for name in order:
        groups = tuple(sorted(g for g, hs in memberships.items() if name in hs))  # as Ansible's group_names
        inv.hosts[name] = host_from_vars(name, hostvars.get(name, {}), groups)
        connection = plain(hostvars.get(name, {}).get("ansible_connection"))
        if connection is not None and str(connection) not in SSH_CONNECTIONS:
            inv.not_ssh[name] = f"ansible_connection={connection}"
    return inv
