"""What every command shares: the options that mean the same everywhere, the consoles, and how
hosts are selected and connected."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

VERBOSITY = {"quiet": False, "verbose": False}


HostsOpt = typer.Option(..., "--hosts", "-i", help="Inventory: tunefleet YAML, or an Ansible inventory (INI, YAML, "
                        "a directory; read by ansible-inventory when installed).")


LimitOpt = typer.Option(None, "--limit", "-l", help="Hosts to use, as an Ansible pattern: a,b  a:&b  a:!b  'web*'  "
                        "'~regex'  group[0]  group[0:2].")


AcceptOpt = typer.Option(False, "--accept-new-host-keys", help="Trust and record unknown host keys (ssh's accept-new).")


TimeoutOpt = typer.Option(5.0, "--connect-timeout", help="Seconds to wait for each host's SSH port.")


SSHConfigOpt = typer.Option(None, "--ssh-config", help="SSH config file to use instead of ~/.ssh/config and "
                            "/etc/ssh/ssh_config (like ssh -F).")


WorkersOpt = typer.Option("threads", "--workers", help="Where host sessions live: threads (this process) "
                          "or ray (Ray actors of up to 16 hosts each, ray:K for K; RAY_ADDRESS joins a cluster).")


ModelOpt = typer.Option(None, "--model", "-m", help="Model to plan with (default: TUNEFLEET_MODEL, the config "
                        "file, or what the endpoint serves); 'builtin' uses the built-in workload catalog.")


RunsDirOpt = typer.Option(None, "--runs-dir", help="Where runs are kept (default: ./runs, or TUNEFLEET_RUNS).")


def _console(stderr: bool = False):
    """Rich output; on a pipe or a CI log, wide enough that tables and messages don't wrap."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 200,
                   quiet=stderr and VERBOSITY["quiet"])


def _json_stdout(as_json: bool):
    """The stream a --json document goes to. With --json, stdout carries that document alone: what
    else the process prints from here on goes to stderr (a Ray driver, for one, prints its workers'
    and raylet's messages on stdout, from a thread, at any time). The command is the process's
    last work, so sys.stdout is not put back (a test runner that swapped it puts its own back)."""
    out = sys.stdout
    if as_json:
        sys.stdout = sys.stderr
    return out


def _error(message: str) -> None:
    """One line on stderr, never wrapped."""
    print(f"error: {message}", file=sys.stderr)


def _reach(accept_new: bool = False, connect_timeout: float = 5.0, workers: str = "threads",
           ssh_config: Path | None = None, heartbeat_timeout: float = 30.0):
    """The command line's connection options as the library takes them (controller/frontend.py)."""
    from controller.frontend import Reach

    return Reach(accept_new_host_keys=accept_new, connect_timeout=connect_timeout, ssh_config=ssh_config,
                 workers=workers, heartbeat_timeout=heartbeat_timeout)


def _connect(hosts: Path, limit: str | None, accept_new: bool, connect_timeout: float, knobs=(),
             workers: str = "threads", ssh_config: Path | None = None, heartbeat_timeout: float = 30.0):
    """The selected hosts, connected with their agents started: (host specs, Fleet)."""
    from controller.frontend import connect

    return connect(hosts, limit, _reach(accept_new, connect_timeout, workers, ssh_config, heartbeat_timeout), knobs)


def _run_folder(run_name: str, runs_dir: Path | None) -> Path:
    from controller.history import DEFAULT_ROOT, resolve_run

    return resolve_run(run_name, runs_dir or DEFAULT_ROOT)


def _reachable_facts(fleet) -> dict:
    """Each reachable host's facts; one error line per host that is not; none reachable is an error."""
    from controller.frontend import reachable_facts

    for name, err in fleet.failed.items():
        _error(f"{name}: {err.message}")
    return reachable_facts(fleet)


def _host_facts(hosts: Path, limit: str | None, accept_new: bool, connect_timeout: float,
                knobs=(), strict: bool = True, ssh_config: Path | None = None, workers: str = "threads") -> dict:
    """hello from every host, describing `knobs`, with what else manages them (controller/frontend.py)."""
    from controller.frontend import host_facts

    return host_facts(hosts, limit, _reach(accept_new, connect_timeout, workers, ssh_config), knobs, strict)


def _strategist_events():
    """Planning progress on stderr (stdout stays clean for --json)."""
    err = _console(stderr=True)

    def show(kind: str, text: str) -> None:
        err.print(f"note: {text}" if kind == "fallback" else f"[dim]strategist: {text}[/]")
    return show
