"""The `tunefleet` command. Thin: parses options, calls the library, prints results.

Heavy libraries (torch, stable-baselines3, ray, openai, optuna) are imported only inside the
commands that use them, so `tunefleet --help` stays instant.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from controller.errors import TunefleetError, UserError

app = typer.Typer(
    name="tunefleet",
    help="Tune Linux hosts by experiment: learn kernel settings from real benchmarks across a fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

HostsOpt = typer.Option(..., "--hosts", "-i", help="Inventory file (tunefleet or Ansible YAML).")
LimitOpt = typer.Option(None, "--limit", "-l", help="Hosts to use: names, groups or globs, comma separated; !x excludes.")
AcceptOpt = typer.Option(False, "--accept-new-host-keys", help="Trust and record unknown host keys (ssh's accept-new).")
TimeoutOpt = typer.Option(5.0, "--connect-timeout", help="Seconds to wait for each host's SSH port.")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _select(hosts: Path, limit: Optional[str]):
    from controller.fleet.inventory import load_inventory

    return load_inventory(hosts).select(limit)


@app.command()
def check(
    hosts: Path = HostsOpt,
    limit: Optional[str] = LimitOpt,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of host objects."),
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
) -> None:
    """Connect to every host, deploy the agent and show what each host is."""
    from controller.fleet.fleet import ConnectOptions, Fleet
    from controller.report import check_rows, print_check

    specs = _select(hosts, limit)
    started = time.monotonic()
    options = ConnectOptions(connect_timeout=connect_timeout, accept_new_host_keys=accept_new_host_keys)
    with Fleet.connect(specs, options) as fleet:
        rtts = fleet.map(_round_trip_ms)
        rows = check_rows(specs, fleet, {n: o.value for n, o in rtts.items() if o.ok})
    elapsed = time.monotonic() - started
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_check(_console(), rows, elapsed)
    failed = [r for r in rows if not r["ok"]]
    if failed:
        err = _console(stderr=True)
        for r in failed:
            err.print(f"[red]error:[/] {r['name']}: {r['error']}")
        raise typer.Exit(1)


def _round_trip_ms(host, n: int = 20) -> float:
    """Median of n ping round trips over the open agent channel, in ms."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        host.request("ping")
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2]


@app.command()
def restore(
    hosts: Path = HostsOpt,
    limit: Optional[str] = LimitOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the restored values as JSON."),
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
) -> None:
    """Write back every original value an agent journaled (after a crash, or after --keep-best)."""
    from controller.fleet.fleet import ConnectOptions, Fleet

    specs = _select(hosts, limit)
    options = ConnectOptions(connect_timeout=connect_timeout, accept_new_host_keys=accept_new_host_keys)
    with Fleet.connect(specs, options) as fleet:
        outcomes = fleet.map(lambda h: {**h.facts.get("recovered", {}), **h.request("restore", {"kept": True})["restored"]})
        failed = dict(fleet.failed)
    result = {n: o.value for n, o in outcomes.items() if o.ok}
    failed.update({n: o.error for n, o in outcomes.items() if not o.ok})
    if as_json:
        print(json.dumps({"restored": result, "errors": {n: str(e) for n, e in failed.items()}}, indent=2))
    else:
        out = _console()
        for name, values in result.items():
            if values:
                out.print(f"{name}: restored " + ", ".join(f"{k} = {v}" for k, v in values.items()))
            else:
                out.print(f"{name}: nothing to restore")
    if failed:
        err = _console(stderr=True)
        for name, e in failed.items():
            err.print(f"[red]error:[/] {e if e.host else f'{name}: {e}'}")
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except TunefleetError as e:
        print(f"tunefleet: error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, UserError) else 1)
    except KeyboardInterrupt:
        print("tunefleet: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
