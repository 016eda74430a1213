"""Inventories: tunefleet's own YAML format, and Ansible inventories with Ansible's meaning.

An Ansible inventory (INI, YAML, a directory, with group_vars/ and host_vars/) is read by
`ansible-inventory` when ansible-core is installed, else by the built-in reader, which refuses
with one line what it cannot resolve exactly. TUNEFLEET_INVENTORY_READER=ansible|builtin
forces one of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from controller.errors import InventoryError
from controller.fleet.inventory import ansible, builtin
from controller.fleet.inventory.hostvars import from_listing
from controller.fleet.inventory.model import HostSpec, Inventory
from controller.fleet.inventory.own import is_own_format, read_own
from controller.fleet.inventory.sources import NeedsAnsible, load_yaml

__all__ = ["HostSpec", "Inventory", "load_inventory", "NeedsAnsible", "READERS"]

READERS = ("auto", "ansible", "builtin")


def load_inventory(path: str | os.PathLike, reader: str | None = None) -> Inventory:
    """Read an inventory; `reader` (or TUNEFLEET_INVENTORY_READER) is auto, ansible or builtin."""
    reader = reader or os.environ.get("TUNEFLEET_INVENTORY_READER") or "auto"
    if reader not in READERS:
        raise InventoryError(f"TUNEFLEET_INVENTORY_READER={reader}: choose one of {', '.join(READERS)}")
    p = Path(path).expanduser()
    host_list = not p.exists() and "," in str(path)  # Ansible's `-i 'web1,web2,'`
    if not p.exists() and not host_list:
        raise InventoryError(f"{path}: no such inventory file or directory")
    own = None if host_list else _own_format(p)
    if own is not None:
        return _nonempty(read_own(own, p.resolve().parent, str(path)), path)
    tool = ansible.find() if reader in ("auto", "ansible") else None
    if reader == "ansible" and tool is None:
        raise InventoryError("TUNEFLEET_INVENTORY_READER=ansible but ansible-inventory is not installed "
                             "(pip install ansible-core)")
    if tool:
        listing, name = ansible.list_inventory(tool, str(path) if host_list else str(p)), "ansible-inventory"
    else:
        listing, name = builtin.list_host_list(str(path)) if host_list else builtin.list_inventory(p), "builtin"
    return _nonempty(from_listing(listing, str(path), name), path)


def _nonempty(inv: Inventory, path) -> Inventory:
    if not inv.hosts:
        raise InventoryError(f"{path}: the inventory names no host")
    return inv


def _own_format(p: Path):
    """The parsed file when it is in tunefleet's own format, else None (an Ansible inventory)."""
    if not p.is_file() or p.suffix not in ("", *builtin.YAML_EXTS):
        return None
    try:
        data = load_yaml(p.read_text(), str(p))
    except (OSError, UnicodeDecodeError) as e:
        raise InventoryError(f"{p}: cannot read: {e}") from None
    except InventoryError:
        if p.suffix in builtin.YAML_EXTS:
            raise
        return None
    return data if is_own_format(data) else None
