"""`tunefleet hosts`: the resolved host list as a table, so a user sees what tunefleet will do."""

from __future__ import annotations

import shlex

from controller.fleet.inventory.model import HostSpec


def _become(spec: HostSpec) -> str:
    """How the agent will be started: sudo -n unless the SSH user is root, or as the inventory says."""
    sudo = spec.sudo if spec.sudo is not None else (None if spec.user is None else spec.user != "root")
    if sudo is None:
        return "sudo -n unless root"
    if not sudo:
        return "no"
    return "sudo -n"


def print_hosts(console, specs: list[HostSpec], reader: str) -> None:
    from rich.table import Table

    table = Table(show_lines=False)
    for col in ("host", "address", "user", "key", "ssh args", "become", "become user", "python", "groups"):
        table.add_column(col, overflow="fold")
    for s in specs:
        table.add_row(s.name, s.address, s.user or "-", s.key or "-", shlex.join(s.ssh_args) or "-", _become(s),
                      s.become_user or "-", s.python or "-", ", ".join(s.groups) or "-")
    console.print(table)
    console.print(f"{len(specs)} host(s), read by {reader}; unset fields come from ssh's config and defaults")
