"""Commands about the hosts themselves: check, install, hosts, restore, audit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from controller.commands.common import (
    AcceptOpt,
    HostsOpt,
    LimitOpt,
    SSHConfigOpt,
    TimeoutOpt,
    WorkersOpt,
    _console,
    _error,
    _json_stdout,
    _reach,
    _run_folder,
)
from controller.errors import UserError
from controller.frontend import select


def check(
    hosts: Path = HostsOpt,
    limit: str | None = LimitOpt,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of host objects."),
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Path | None = SSHConfigOpt,
    workers: str = WorkersOpt,
) -> None:
    """Connect to every host, deploy the agent and show what each host is."""
    from controller.frontend import check as checking
    from controller.report import print_check

    doc = _json_stdout(as_json)
    rows, elapsed = checking(hosts, limit, _reach(accept_new_host_keys, connect_timeout, workers, ssh_config))
    if as_json:
        print(json.dumps(rows, indent=2), file=doc)
    else:
        console = _console()
        print_check(console, rows, elapsed)
        for r in rows:
            for line in r.get("managed") or []:
                console.print(f"{r['name']}: {line}", soft_wrap=True)
            by_reason: dict[str, list[str]] = {}
            for knob, why in (r.get("lacks") or {}).items():
                by_reason.setdefault(why, []).append(knob)
            for why, knobs in by_reason.items():
                console.print(f"{r['name']} lacks {', '.join(knobs)}: {why} (plans leave them out)", soft_wrap=True)
    failed = [r for r in rows if not r["ok"]]
    if failed:
        for r in failed:
            _error(f"{r['name']}: {r['error']}")
        raise typer.Exit(1)


def install(
    hosts: Path = HostsOpt,
    limit: str | None = LimitOpt,
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Path | None = SSHConfigOpt,
    user: str | None = typer.Option(None, "--user", "-u", help="Log in as this user instead of the inventory's "
                                    "(root, or an administrator with sudo: the tuning user's rule cannot install)."),
) -> None:
    """Install this agent root-owned on each host for a non-root user's sudo rule (also the upgrade step)."""
    # As root over SSH, or through the SSH user's own sudo once: `sudo -n`, else its password
    # asked on the terminal. A run refuses an installed agent that is not this build.
    import dataclasses
    import getpass

    from controller.errors import HostError, SudoPasswordRequired
    from controller.fleet.deploy import INSTALL_PATH, build_payload
    from controller.fleet.session import install_agent
    from controller.fleet.transport import SSHTransport

    specs = [dataclasses.replace(s, user=user) if user else s for s in select(hosts, limit)]
    if ssh_config is not None and not ssh_config.exists():
        raise UserError(f"--ssh-config {ssh_config}: no such file")
    password, failed = None, []
    for spec in specs:
        try:
            transport = SSHTransport(spec, connect_timeout=connect_timeout, accept_new_host_keys=accept_new_host_keys,
                                     ssh_config=str(ssh_config) if ssh_config else None)
            try:
                try:
                    how = install_agent(spec.name, transport, password)
                except SudoPasswordRequired:
                    if password is not None or not sys.stdin.isatty():
                        raise
                    password = getpass.getpass(f"sudo password for {transport.user}: ")
                    how = install_agent(spec.name, transport, password)
            finally:
                transport.close()
        except HostError as e:
            failed.append(spec.name)
            _error(str(e))
            continue
        print(f"{spec.name}: installed {INSTALL_PATH} ({build_payload().short}, as {how})")
    if failed:
        raise typer.Exit(1)


def hosts(
    hosts: Path = HostsOpt,
    limit: str | None = LimitOpt,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of host objects."),
) -> None:
    """Show the hosts an inventory and --limit select, and how each is reached, without connecting."""
    from controller.fleet.inventory import load_inventory
    from controller.fleet.inventory.show import print_hosts

    inventory = load_inventory(hosts)
    specs = inventory.select(limit)
    if as_json:
        print(json.dumps([s.as_dict() for s in specs], indent=2))
    else:
        print_hosts(_console(), specs, inventory.reader)


def restore(
    hosts: Path = HostsOpt,
    limit: str | None = LimitOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the restored values as JSON."),
    unpersist: bool = typer.Option(False, "--unpersist", help="Also delete the sysctl.d drop-in that --persist wrote, "
                                   "and put its knobs back on their originals now (not only at the next boot)."),
    persist_file: str = typer.Option("/etc/sysctl.d/90-tunefleet.conf", "--persist-file",
                                     help="The drop-in to delete."),
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Path | None = SSHConfigOpt,
    workers: str = WorkersOpt,
) -> None:
    """Write back every original value an agent journaled (after a crash, or after --keep-best).

    Says per host and knob: restored, already original, left as someone else set it (never overwritten), or failed (with the errno); exits 1 when a host is unreachable or anything is left changed (it stays journaled on the host)."""  # noqa: E501 - the help keeps a docstring's line breaks: one paragraph, one line
    from controller.frontend import restore as restoring

    doc = _json_stdout(as_json)
    reports, failed = restoring(hosts, limit, _reach(accept_new_host_keys, connect_timeout, workers, ssh_config),
                                persist_file if unpersist else None)
    if as_json:
        print(json.dumps({**{key: {n: r.to_dict()[key] for n, r in reports.items()}
                             for key in ("restored", "unchanged", "failed", "left", "removed", "discarded", "foreign")},
                          "errors": {n: str(e) for n, e in failed.items()}}, indent=2), file=doc)
    else:
        print("\n".join(line for name, r in reports.items() for line in r.lines(name)))
    for name, r in reports.items():
        if not r.clean:
            _error(f"{name}: left changed: {', '.join(r.left)}; they stay journaled on the host "
                   f"(run `tunefleet restore` again once the cause is fixed)")
    for name, e in failed.items():
        _error(str(e) if e.host else f"{name}: {e}")
    if failed or not all(r.clean for r in reports.values()):
        raise typer.Exit(1)


def audit(
    run_name: str | None = typer.Argument(None, metavar="[RUN]", help="Compare with this past run's verified winner "
                                          "(a run folder, or its name under the runs folder)."),
    hosts: Path = HostsOpt,
    limit: str | None = LimitOpt,
    spec_file: Path | None = typer.Option(None, "--spec", help="Audit the knobs of this spec."),
    profile: str | None = typer.Option(None, "--profile", help="Compare with a TuneD profile as each host has it "
                                       "(NAME or tuned:NAME; 'active': the one TuneD runs there)."),
    as_json: bool = typer.Option(False, "--json", help="Print the audit as JSON."),
    runs_dir: Path | None = typer.Option(None, "--runs-dir", help="Where runs are kept (default: ./runs, or "
                                         "TUNEFLEET_RUNS)."),
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Path | None = SSHConfigOpt,
) -> None:
    """Read each host's knobs and say who manages them, against a run or a profile; changes nothing.

    Per knob: the current value, a past run's verified winner (or the profile's value), every sysctl
    file that sets it and the one that wins at boot, an active TuneD profile, running tuning daemons,
    and drift since a run that persisted its winner. No agent is started and nothing is written."""
    from controller import audit as auditing
    from controller.fleet.fleet import ConnectOptions

    auditing.check_choice(spec_file, run_name, profile)
    doc = _json_stdout(as_json)
    run = None
    if run_name is not None:
        from controller.history import load_run

        run = load_run(_run_folder(run_name, runs_dir), trials=False)
    if spec_file is not None and not spec_file.exists():
        raise UserError(f"--spec {spec_file}: no such file")
    if ssh_config is not None and not ssh_config.exists():
        raise UserError(f"--ssh-config {ssh_config}: no such file")
    specs = select(hosts, limit)
    options = ConnectOptions(connect_timeout=connect_timeout, accept_new_host_keys=accept_new_host_keys,
                             ssh_config=str(ssh_config) if ssh_config else None)
    report = auditing.audit(specs, auditing.knob_names(spec_file, run, profile), options, run=run, profile=profile)
    if as_json:
        print(json.dumps(report, indent=2), file=doc)
    else:
        auditing.print_audit(_console(), report)
    bad = [n for n, h in report["hosts"].items() if h.get("error")]
    for name in bad:
        _error(f"{name}: {report['hosts'][name]['error']}")
    if bad:
        raise typer.Exit(1)
