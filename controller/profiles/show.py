"""`tunefleet profiles`: the shipped expert profiles as tables, so a user sees what a comparison
arm would set, where each value comes from, and what of a profile no sysctl run reproduces."""

from __future__ import annotations

from rich.markup import escape


def print_profiles(console, found: list) -> None:
    from rich.table import Table

    table = Table(show_lines=False)
    for col in ("profile", "sysctls", "other settings", "source"):
        table.add_column(col, overflow="fold")
    for p in found:
        table.add_row(p.name, str(len(p.values)), str(len(p.not_sysctl)), escape(p.source))
    console.print(table)
    console.print(f"{len(found)} profile(s); `tunefleet profiles NAME` shows one with every value and why")


def print_profile(console, p) -> None:
    from rich.table import Table

    console.print(f"[bold]{escape(p.name)}[/bold]: {escape(p.summary)}")
    console.print(f"source: {escape(p.source)}")
    console.print(f"version: {escape(p.version)}")
    if p.includes:
        console.print(f"includes: {', '.join(p.includes)}")
    table = Table(title="sysctls", title_justify="left", show_lines=False)
    for col in ("sysctl", "value", "set by", "why"):
        table.add_column(col, overflow="fold")
    for name in p.values:
        table.add_row(name, escape(p.written(name)), p.origin.get(name, ""), escape(p.why.get(name, "")))
    console.print(table)
    if any(p.modifiers.values()):
        console.print("a value starting with > is a floor: written only where the current value is lower "
                      "(< : only where it is higher)")
    for unit in p.conditional:
        values = ", ".join(f"{k} = {v}" for k, v in unit["values"].items())
        console.print(escape(f"only where {unit['when']}: {values} ([{unit['unit']}]; not applied by tunefleet)"))
    if p.unset:
        console.print("named without a value that fits every host:")
        for name, why in p.unset.items():
            console.print(f"  {name}: {escape(why)}")
    if p.not_sysctl:
        other = Table(title="not sysctls (a sysctl run does not apply or measure these)", title_justify="left")
        for col in ("setting", "value", "why"):
            other.add_column(col, overflow="fold")
        for key, value in p.not_sysctl.items():
            other.add_row(escape(key), escape(value), escape(p.why.get(key, "")))
        console.print(other)
    for note in p.notes:
        console.print(f"note: {escape(note)}")
