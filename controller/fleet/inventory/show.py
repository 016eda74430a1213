"""`tunefleet hosts`: the resolved host list as a table, so a user sees what tunefleet will do."""

from __future__ import annotations

from controller.fleet.inventory.model import HostSpec


def _become(spec: HostSpec) -> str:
    if spec.sudo is None:
        return "sudo -n unless root" if spec.user != "root" else "no (root)"
    return f"sudo -u {spec.become_user or 'root'}" if spec.sudo else "no"


def print_hosts(console, specs: list[HostSpec], reader: str) -> None:
    from rich.table import Table

    table = Table(show_lines=False)
    for col in ("host", "address", "user", "key", "ssh args", "become", "python", "groups"):
        table.add_column(col, overflow="fold")
    for s in specs:
        table.add_row(s.name, s.address, s.user or "-", s.key or "-", " ".join(s.ssh_args) or "-", _become(s),
                      s.python or "-", ", ".join(s.groups) or "-")
    console.print(table)
    console.print(f"{len(specs)} host(s), read by {reader}; unset fields come from ssh's config and defaults")
