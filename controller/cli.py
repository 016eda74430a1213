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
    add_completion=True,
    pretty_exceptions_enable=False,
)

# Set once by the global --quiet / --verbose options (see _global).
VERBOSITY = {"quiet": False, "verbose": False}


@app.callback()
def _global(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only results and errors: no plan, no progress."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also one line per benchmark evaluation, and debug logs."),
) -> None:
    """Tune Linux hosts by experiment: learn kernel settings from real benchmarks across a fleet.

    NO_COLOR=1 turns colour off."""
    if quiet and verbose:
        raise UserError("--quiet and --verbose contradict each other; choose one")
    VERBOSITY.update(quiet=quiet, verbose=verbose)
    if verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")

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


def _select(hosts: Path, limit: Optional[str]):
    from controller.fleet.inventory import load_inventory

    return load_inventory(hosts).select(limit)


def _connect(hosts: Path, limit: Optional[str], accept_new: bool, connect_timeout: float, knobs=(),
             workers: str = "threads", ssh_config: Optional[Path] = None, heartbeat_timeout: float = 30.0):
    """The selected hosts, connected with their agents started: (host specs, Fleet)."""
    from controller.fleet.executor import parse_workers
    from controller.fleet.fleet import ConnectOptions, Fleet

    parse_workers(workers)  # a bad --workers is refused before any host is touched
    specs = _select(hosts, limit)
    if ssh_config is not None and not ssh_config.exists():
        raise UserError(f"--ssh-config {ssh_config}: no such file")
    from controller.catalog import ALLOWED_IN_NAMESPACE, AVAILABLE_FROM

    knobs = list(knobs) + [m[k] for m in (AVAILABLE_FROM, ALLOWED_IN_NAMESPACE) for k in knobs if k in m]
    options = ConnectOptions(connect_timeout=connect_timeout, accept_new_host_keys=accept_new, knobs=tuple(knobs),
                             workers=workers, ssh_config=str(ssh_config) if ssh_config else None,
                             heartbeat_timeout=heartbeat_timeout)
    return specs, Fleet.connect(specs, options)


@app.command()
def check(
    hosts: Path = HostsOpt,
    limit: Optional[str] = LimitOpt,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of host objects."),
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Optional[Path] = SSHConfigOpt,
    workers: str = WorkersOpt,
) -> None:
    """Connect to every host, deploy the agent and show what each host is."""
    from controller.fleet.fleet import round_trip_ms
    from controller.report import check_rows, print_check

    doc = _json_stdout(as_json)
    started = time.monotonic()
    specs, fleet = _connect(hosts, limit, accept_new_host_keys, connect_timeout, workers=workers,
                            ssh_config=ssh_config)
    from controller import conflicts
    from controller.catalog import Catalog

    names = Catalog.default().names()
    with fleet:
        rtts = fleet.map(round_trip_ms)
        rows = check_rows(specs, fleet, {n: o.value for n, o in rtts.items() if o.ok})
        scans = conflicts.scan_fleet(fleet, names)
    for r in rows:  # the catalog's knobs that something besides tunefleet manages here
        scan = scans.get(r["name"]) or {}
        r["managed"] = conflicts.host_lines(scan, [k for k in names if _managed(scan, k)]) if scan else []
    elapsed = time.monotonic() - started
    if as_json:
        print(json.dumps(rows, indent=2), file=doc)
    else:
        console = _console()
        print_check(console, rows, elapsed)
        for r in rows:
            for line in r.get("managed") or []:
                console.print(f"{r['name']}: {line}", soft_wrap=True)
    failed = [r for r in rows if not r["ok"]]
    if failed:
        for r in failed:
            _error(f"{r['name']}: {r['error']}")
        raise typer.Exit(1)


def _managed(scan: dict, knob: str) -> bool:
    k = (scan.get("knobs") or {}).get(knob) or {}
    return bool(k.get("files") or k.get("tuned") or k.get("daemons"))


@app.command()
def install(
    hosts: Path = HostsOpt,
    limit: Optional[str] = LimitOpt,
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Optional[Path] = SSHConfigOpt,
    user: Optional[str] = typer.Option(None, "--user", "-u", help="Log in as this user instead of the inventory's "
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

    specs = [dataclasses.replace(s, user=user) if user else s for s in _select(hosts, limit)]
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


@app.command()
def hosts(
    hosts: Path = HostsOpt,
    limit: Optional[str] = LimitOpt,
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


@app.command()
def profiles(
    name: Optional[str] = typer.Argument(None, metavar="NAME", help="A profile to show in full, e.g. "
                                         "tuned:throughput-performance or redis:docs."),
    workload: Optional[str] = typer.Option(None, "--workload", "-w", help="Only the profiles that fit this "
                                           "workload (pg-oltp, web, redis, stream, ...)."),
    profile_file: Optional[Path] = typer.Option(None, "--profile-file", help="Also read your own profile: a TuneD "
                                                "tuned.conf (or its folder) or a YAML file shaped like servers.yaml."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: a list of profiles, or the one named."),
) -> None:
    """List the expert settings tunefleet compares with (TuneD profiles, servers' documentation), or show one.

    One profile: every sysctl with its value, where it is set and why, then the settings that are not sysctls."""
    from controller import profiles as known
    from controller.profiles.show import print_profile, print_profiles

    found = known.for_workload(workload) if workload else [known.get(n) for n in known.names()]
    if profile_file is not None:
        found = found + known.load_file(profile_file)
    if name is not None:
        chosen = [p for p in found if p.name == name] or [known.get(name)]
        if as_json:
            print(json.dumps(chosen[0].to_dict(), indent=2))
        else:
            print_profile(_console(), chosen[0])
    elif as_json:
        print(json.dumps([{"name": p.name, "summary": p.summary, "source": p.source, "version": p.version,
                           "sysctls": len(p.values), "not_sysctl": len(p.not_sysctl)} for p in found], indent=2))
    else:
        print_profiles(_console(), found)


@app.command()
def restore(
    hosts: Path = HostsOpt,
    limit: Optional[str] = LimitOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the restored values as JSON."),
    unpersist: bool = typer.Option(False, "--unpersist", help="Also delete the sysctl.d drop-in that --persist wrote, "
                                   "and put its knobs back on their originals now (not only at the next boot)."),
    persist_file: str = typer.Option("/etc/sysctl.d/90-tunefleet.conf", "--persist-file", help="The drop-in to delete."),
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Optional[Path] = SSHConfigOpt,
    workers: str = WorkersOpt,
) -> None:
    """Write back every original value an agent journaled (after a crash, or after --keep-best).

    Says per host and knob: restored, already original, left as someone else set it (never overwritten), or failed (with the errno); exits 1 when a host is unreachable or anything is left changed (it stays journaled on the host)."""
    from controller.fleet.restoring import restore_host

    doc = _json_stdout(as_json)
    _, fleet = _connect(hosts, limit, accept_new_host_keys, connect_timeout, workers=workers, ssh_config=ssh_config)
    with fleet:
        outcomes = fleet.map(lambda h: restore_host(h, persist_file if unpersist else None))
        failed = dict(fleet.failed)
    reports = {n: o.value for n, o in outcomes.items() if o.ok}
    failed.update({n: o.error for n, o in outcomes.items() if not o.ok})
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


@app.command()
def audit(
    run_name: Optional[str] = typer.Argument(None, metavar="[RUN]", help="Compare with this past run's verified winner "
                                             "(a run folder, or its name under the runs folder)."),
    hosts: Path = HostsOpt,
    limit: Optional[str] = LimitOpt,
    spec_file: Optional[Path] = typer.Option(None, "--spec", help="Audit the knobs of this spec."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Compare with a TuneD profile as each host has it "
                                          "(NAME or tuned:NAME; 'active': the one TuneD runs there)."),
    as_json: bool = typer.Option(False, "--json", help="Print the audit as JSON."),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="Where runs are kept (default: ./runs, or "
                                            "TUNEFLEET_RUNS)."),
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Optional[Path] = SSHConfigOpt,
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
    specs = _select(hosts, limit)
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


def _load_catalog(extra: Optional[Path]):
    from controller.catalog import Catalog

    catalog = Catalog.default()
    if extra is not None:
        catalog = catalog.load_extra(extra)
    return catalog


def _make_plan(goal: Optional[str], spec_file: Optional[Path], facts: dict | None = None,
               model: Optional[str] = None, catalog=None):
    """A spec from a file, or from the goal through the strategist. Returns (spec, plan-or-None)."""
    from controller.spec import TuningSpec

    if spec_file is not None:
        return TuningSpec.load(spec_file), None
    if not goal:
        raise UserError("say what the hosts are for (a GOAL such as \"optimize for PostgreSQL\") or give --spec FILE")
    from controller.strategist import choose

    plan = choose(goal, facts, model=model, catalog=catalog, on_event=_strategist_events())
    return plan.spec, plan


def _strategist_events():
    """Planning progress on stderr (stdout stays clean for --json)."""
    err = _console(stderr=True)

    def show(kind: str, text: str) -> None:
        err.print(f"note: {text}" if kind == "fallback" else f"[dim]strategist: {text}[/]")
    return show


@app.command()
def plan(
    goal: Optional[str] = typer.Argument(None, help="What the hosts are for, in plain words."),
    hosts: Optional[Path] = typer.Option(None, "--hosts", "-i", help="Inventory: check the plan against these hosts."),
    limit: Optional[str] = LimitOpt,
    spec_file: Optional[Path] = typer.Option(None, "--spec", help="Validate this spec file instead of planning."),
    catalog_file: Optional[Path] = typer.Option(None, "--catalog", help="Extra tunables (YAML/JSON)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the spec to this file (JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    list_workloads: bool = typer.Option(False, "--list", help="List the built-in workloads."),
    model: Optional[str] = ModelOpt,
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Optional[Path] = SSHConfigOpt,
    workers: str = WorkersOpt,
) -> None:
    """Turn a goal into a tuning spec (benchmark, reward, knobs and ranges) and show why."""
    from controller.catalog import validate

    if list_workloads:
        from controller.strategist.builtin import workloads

        for w in workloads():
            print(f"{w.key:18} {w.description}")
        return
    doc = _json_stdout(as_json)
    catalog = _load_catalog(catalog_file)
    facts = None
    if hosts is not None:
        facts = _host_facts(hosts, limit, accept_new_host_keys, connect_timeout, knobs=catalog.names(),
                            ssh_config=ssh_config, workers=workers)
    spec, chosen = _make_plan(goal, spec_file, facts, model=model, catalog=catalog)
    validate(spec, catalog, facts, origin=_origin(chosen))
    if output is not None:
        from controller.runs import write_json_atomic

        write_json_atomic(output, spec.to_dict())
    from controller import conflicts

    managed = {n: f.get("managed") or {} for n, f in (facts or {}).items()}
    if as_json:
        record = _plan_record(spec, chosen)
        if facts:
            record["managed"] = {n: {k: (m.get("knobs") or {}).get(k) for k in spec.knob_names}
                                 for n, m in managed.items()}
            record["managed_lines"] = {n: conflicts.host_lines(m, spec.knob_names) for n, m in managed.items()}
        print(json.dumps(record, indent=2), file=doc)
    else:
        console = _console()
        _show_plan(console, spec, chosen, spec_file, facts or {})
        for name, m in managed.items():
            for line in conflicts.host_lines(m, spec.knob_names) + conflicts.daemon_refusals({name: m}, spec.knob_names):
                console.print(f"{name}: {line}" if not line.startswith(f"{name}: ") else line, soft_wrap=True)
        if output is not None:
            console.print(f"spec written to {output}")


def _origin(chosen) -> str:
    """Who wrote the benchmark command: the user (--spec), the model, or the built-in catalog."""
    if chosen is None:
        return "user"
    return "model" if getattr(chosen, "strategist", "builtin") == "llm" else "builtin"


def _show_plan(console, spec, chosen, spec_file, hosts) -> None:
    """The plan, the exact argv the agents will exec, and what the planner left out and why."""
    from rich.markup import escape

    from controller.report import print_plan
    from controller.strategist.benchcheck import record

    print_plan(console, spec, reason=chosen.reason if chosen else f"from {spec_file}",
               rationale=chosen.rationale if chosen else None, warnings=chosen.warnings if chosen else (),
               hosts=hosts)
    bench = record(spec, _origin(chosen))
    where = f"; in {bench['cwd']}" if bench["cwd"] else ""
    author = {"user": f"you, in {spec_file}", "model": "the model", "builtin": "the built-in catalog"}
    console.print(f"[bold]argv[/]: {escape(json.dumps(bench['argv']))} (exec, no shell{escape(where)}; written by "
                  f"{escape(author[bench['origin']])})", soft_wrap=True)
    for note in getattr(chosen, "notes", ()):
        console.print(f"note: {escape(note)}", soft_wrap=True)


def _plan_record(spec, chosen) -> dict:
    from controller.strategist.benchcheck import record

    record = {"spec": spec.to_dict(), "benchmark": record(spec, _origin(chosen))}
    if chosen is not None:
        record.update({"strategist": getattr(chosen, "strategist", "builtin"), "workload": chosen.workload,
                       "reason": chosen.reason, "rationale": chosen.rationale, "warnings": list(chosen.warnings),
                       "notes": list(getattr(chosen, "notes", ())), "left_out": dict(getattr(chosen, "left_out", {}))})
        if getattr(chosen, "llm", None):  # which model, how many tokens (never the key)
            record.update({"model": chosen.model, "usage": chosen.usage, "llm": chosen.llm})
    return record


def _reachable_facts(fleet) -> dict:
    """Each reachable host's facts; one error line per host that is not; none reachable is an error."""
    for name, err in fleet.failed.items():
        _error(f"{name}: {err.message}")
    if not fleet.hosts:
        raise UserError("no host could be reached; nothing was changed")
    return {n: h.facts for n, h in fleet.hosts.items()}


def _host_facts(hosts: Path, limit: Optional[str], accept_new: bool, connect_timeout: float,
                knobs=(), strict: bool = True, ssh_config: Optional[Path] = None, workers: str = "threads") -> dict:
    """hello from every host, describing `knobs`, with what else manages them (`managed`: the
    agent's scan, controller/conflicts.py); with strict=False, the hosts that answered."""
    from controller import conflicts

    _, fleet = _connect(hosts, limit, accept_new, connect_timeout, knobs, workers, ssh_config=ssh_config)
    with fleet:
        if fleet.failed and (strict or not fleet.hosts):
            raise next(iter(fleet.failed.values()))
        scans = conflicts.scan_fleet(fleet, list(knobs)) if knobs else {}
        return {n: {**h.facts, "managed": scans.get(n, {})} for n, h in fleet.hosts.items()}


@app.command()
def run(
    ctx: typer.Context,
    goal: Optional[str] = typer.Argument(None, help="What the hosts are for, in plain words."),
    hosts: Optional[Path] = typer.Option(None, "--hosts", "-i", help=HostsOpt.help + " Required unless --resume."),
    limit: Optional[str] = LimitOpt,
    spec_file: Optional[Path] = typer.Option(None, "--spec", help="Run this spec file (JSON or YAML) instead of planning."),
    strategy: str = typer.Option("auto", "--strategy", help="Search strategy: auto (ppo from a well-trained "
                                 "stored policy, else bo; docs/strategies.md), ppo, bo (Bayesian, optuna), random."),
    budget: Optional[int] = typer.Option(None, "--budget", min=1, help="Benchmark evaluations to spend on the search, across "
                                         "the fleet (default: the spec's training_config.total_timesteps, else 24)."),
    policy: Optional[str] = typer.Option(None, "--policy", help="ppo: start from this saved policy (PATH), or 'none' to "
                                         "start cold (default: the policy store's compatible policy, if any)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the search (runs are repeatable up to benchmark noise)."),
    verify_repeats: int = typer.Option(5, "--verify-repeats", min=2, help="Original-vs-best pairs measured per host (a single host needs 4 or more to reach p < 0.05)."),
    baseline_repeats: Optional[int] = typer.Option(None, "--baseline-repeats", min=1, help="Baseline runs per host (default: the spec's)."),
    confirm_top: int = typer.Option(3, "--confirm-top", min=0, help="Re-measure the search's top K configurations before choosing the best (0: trust the best sample)."),
    catalog_file: Optional[Path] = typer.Option(None, "--catalog", help="Extra tunables (YAML/JSON)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run folder (default runs/<time>-<workload>)."),
    keep_best: bool = typer.Option(False, "--keep-best", help="Leave the best configuration applied (not persisted across reboots)."),
    persist: bool = typer.Option(False, "--persist", help="If the improvement is significant, keep the best configuration "
                                 "and write it to a sysctl.d drop-in so it survives reboots."),
    persist_file: str = typer.Option("/etc/sysctl.d/90-tunefleet.conf", "--persist-file", help="The drop-in --persist writes."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before changing hosts."),
    as_json: bool = typer.Option(False, "--json", help="Print only the result JSON on stdout."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan and validate against the hosts, change nothing."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Log the search's results (and PPO's training "
                                     "curves) to RUN_DIR/tensorboard (needs tensorboard)."),
    model: Optional[str] = ModelOpt,
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Optional[Path] = SSHConfigOpt,
    workers: str = WorkersOpt,
    resume_dir: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder that was killed "
                                              "or interrupted, with its spec and options (--hosts: another inventory)."),
    heartbeat_timeout: float = typer.Option(30.0, "--heartbeat-timeout", min=3.0, max=86400.0, help="Seconds of silence "
                                            "after which a host's agent restores its originals and exits, and the run "
                                            "drops that host."),
    compare: list[str] = typer.Option([], "--compare", help="Also measure an expert profile (tuned:NAME, redis:docs, "
                                      "...; `tunefleet profiles` lists them) beside the winner, in the same "
                                      "interleaved verification; 'auto': those that fit the built-in workload."),
    rejoin_window: float = typer.Option(180.0, "--rejoin-window", min=0.0, max=86400.0, help="Seconds a host whose "
                                        "agent was lost (a partition, a reboot) is reconnected for, in any phase, "
                                        "before the run leaves it out."),
    rejoin_interval: float = typer.Option(3.0, "--rejoin-interval", min=0.1, max=3600.0, help="Seconds between two "
                                          "reconnection attempts to a lost host."),
    force: bool = typer.Option(False, "--force", help="--persist even where the drop-in would not win at boot (a later "
                               "sysctl file or a TuneD profile sets the same knob)."),
) -> None:
    """Learn better kernel settings by running the benchmark on every host, then restore them."""
    from controller.catalog import validate
    from controller.report import print_result

    doc = _json_stdout(as_json)
    out = _console(stderr=True)
    resumed = None
    if resume_dir is not None:  # everything as the run that died recorded it (options.json); consent was given then
        from controller.resume import Resume, check_options

        resumed = Resume.load(resume_dir)
        o = resumed.options
        given = _given(ctx, goal=goal, spec_file=spec_file, run_dir=run_dir, budget=budget, strategy=strategy,
                       seed=seed, policy=policy, verify_repeats=verify_repeats, baseline_repeats=baseline_repeats,
                       confirm_top=confirm_top, keep_best=keep_best, persist=persist, persist_file=persist_file,
                       catalog_file=catalog_file and str(catalog_file.resolve()), heartbeat_timeout=heartbeat_timeout,
                       workers=workers, tensorboard=tensorboard, ssh_config=ssh_config and str(ssh_config.resolve()),
                       rejoin_window=rejoin_window, rejoin_interval=rejoin_interval, force=force)
        for line in resumed.notes + check_options(o, given):
            out.print(line)
        hosts, limit = (hosts, limit) if hosts else (Path(o["hosts"]), o.get("limit"))
        goal, spec_file, yes = None, resumed.run.path / "spec.json", True
        catalog_file = Path(o["catalog"]) if o.get("catalog") else None
        ssh_config = ssh_config or (Path(o["ssh_config"]) if o.get("ssh_config") else None)
        strategy, budget, seed, policy = o["strategy"], o["budget"], o["seed"], o["policy"]
        verify_repeats, baseline_repeats = o["verify_repeats"], o["baseline_repeats"]
        confirm_top, keep_best = o["confirm_top"], o["keep_best"]
        persist, persist_file = bool(o["persist_file"]), o["persist_file"] or persist_file
        workers = workers if "--workers" in given else o["workers"]
        tensorboard = tensorboard if "--tensorboard" in given else o["tensorboard"]
        if "--heartbeat-timeout" not in given:
            heartbeat_timeout = o.get("heartbeat_timeout", heartbeat_timeout)
        compare = compare or list(o.get("compare") or [])
        rejoin_window = rejoin_window if "--rejoin-window" in given else o.get("rejoin_window", rejoin_window)
        rejoin_interval = rejoin_interval if "--rejoin-interval" in given else o.get("rejoin_interval", rejoin_interval)
        force = force if "--force" in given else bool(o.get("force"))
    elif hosts is None:
        raise UserError("--hosts is required (or --resume RUN_DIR)")
    invocation = {"hosts": str(hosts.resolve()), "limit": limit,
                  "catalog": str(catalog_file.resolve()) if catalog_file else None,
                  "ssh_config": str(ssh_config.resolve()) if ssh_config else None, "workers": workers,
                  "keep_best": keep_best, "persist_file": persist_file if persist else None, "tensorboard": tensorboard,
                  "heartbeat_timeout": heartbeat_timeout, "rejoin_window": rejoin_window,
                  "rejoin_interval": rejoin_interval, "force": force, "compare": list(compare)}
    catalog = _load_catalog(catalog_file)
    _select(hosts, limit)  # a bad inventory or --limit fails before any planning
    facts = None
    if goal and spec_file is None:  # either strategist plans for what the hosts have (hello only: no change)
        facts = _host_facts(hosts, limit, accept_new_host_keys, connect_timeout, knobs=catalog.names(), strict=False,
                            ssh_config=ssh_config, workers=workers)
    spec, chosen = _make_plan(goal, spec_file, facts, model=model, catalog=catalog)
    validate(spec, catalog, origin=_origin(chosen))  # everything that can be refused without a host
    compare = _profiles_to_compare(compare, chosen)
    from controller.learn.search import STRATEGIES

    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy}: unknown (choose from {', '.join(STRATEGIES)})")
    if tensorboard:
        from controller.tblog import require

        require()

    _, fleet = _connect(hosts, limit, accept_new_host_keys, connect_timeout, spec.knob_names, workers,
                        ssh_config=ssh_config, heartbeat_timeout=heartbeat_timeout)
    result = None
    try:
        facts = _reachable_facts(fleet)
        validate(spec, catalog, facts, origin=_origin(chosen))
        if resumed is not None:
            said = len(resumed.notes)
            resumed.check_fleet(fleet, spec)
            for line in resumed.notes[said:]:
                out.print(line, soft_wrap=True)
            out.print(f"resuming {resumed.run.path} in the {resumed.phase} phase; restored: "
                      f"{resumed.summary()['restored'] or 'nothing, every host was on its originals'}")
        _show_plan(out, spec, chosen, spec_file, facts)
        from controller import conflicts

        conflicts.preflight(fleet, spec, persist_file if persist else None, force, lambda t: out.print(t, soft_wrap=True))
        if dry_run:
            out.print("dry run: nothing was changed")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise UserError("refusing to change hosts without confirmation: pass --yes")
            if not typer.confirm(f"Run this benchmark and change these knobs on {len(fleet.hosts)} host(s)?", err=True):
                raise typer.Exit(1)
        result = _run(spec, chosen, fleet, out, strategy=strategy, budget=budget, seed=seed, policy=policy,
                      verify_repeats=verify_repeats, baseline_repeats=baseline_repeats, run_dir=run_dir,
                      keep_best=keep_best, confirm_top=confirm_top, persist_file=persist_file if persist else None,
                      tensorboard=tensorboard, invocation=invocation, resume=resumed, rejoin_window=rejoin_window,
                      rejoin_interval=rejoin_interval, force=force, compare=compare, catalog=catalog)
    except KeyboardInterrupt:
        out.print("[yellow]interrupted:[/] finishing the benchmarks in flight, then restoring every host")
    finally:
        # Every agent writes its journaled originals back on bye, whatever happened above.
        restored = fleet.close(keep=bool(result and result.get("kept")))
    bad = {n: o.error for n, o in restored.items() if not o.ok}
    for name, err in bad.items():
        _error(f"{name}: could not restore: {err.message}; run `tunefleet restore --hosts {hosts}`")
    if result is None:  # interrupted: nothing to report, and the hosts are back as they were
        print(f"tunefleet: interrupted; {'every host restored' if not bad else 'see the errors above'}",
              file=sys.stderr)
        raise typer.Exit(130)
    if as_json:
        print(json.dumps(result, indent=2), file=doc)
    else:
        print_result(_console(), result)
        _print_outcome(_console(), result, hosts)
    _report_line(result, sys.stderr if as_json else sys.stdout)
    if fleet.failed or bad:
        raise typer.Exit(1)


@app.command()
def chat(
    hosts: Path = HostsOpt,
    limit: Optional[str] = LimitOpt,
    model: Optional[str] = ModelOpt,
    strategy: str = typer.Option("auto", "--strategy", help="Search strategy: auto (ppo from a well-trained "
                                 "stored policy, else bo; docs/strategies.md), ppo, bo (Bayesian, optuna), random."),
    budget: Optional[int] = typer.Option(None, "--budget", min=1, help="Benchmark evaluations per optimization, across "
                                         "the fleet (default: the spec's training_config.total_timesteps, else 24)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the search."),
    verify_repeats: int = typer.Option(5, "--verify-repeats", min=2, help="Original-vs-best pairs measured per host (a single host needs 4 or more to reach p < 0.05)."),
    catalog_file: Optional[Path] = typer.Option(None, "--catalog", help="Extra tunables (YAML/JSON)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run every validated plan without asking (never keeps results)."),
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Optional[Path] = SSHConfigOpt,
    workers: str = WorkersOpt,
) -> None:
    """Talk to the strategist: it plans, asks before it runs, tunes the hosts and reports what it measured."""
    from controller.catalog import validate
    from controller.report import print_result
    from controller.strategist.chat import ChatIO, chat as converse
    from controller.strategist.config import resolve

    config = resolve(model)
    if config is None:
        raise UserError("chat needs a model endpoint: set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one), "
                        "or use `tunefleet run GOAL` with the built-in strategist")
    if not yes and not sys.stdin.isatty():
        raise UserError("chat asks before it changes hosts: run it in a terminal, or pass --yes")
    out, console = _console(stderr=True), _console()
    catalog = _load_catalog(catalog_file)
    _, fleet = _connect(hosts, limit, accept_new_host_keys, connect_timeout, catalog.names(), workers,
                        ssh_config=ssh_config)
    kept = []
    try:
        facts = _reachable_facts(fleet)

        def ask():
            try:
                return console.input("[bold]you>[/] ")
            except EOFError:
                return None

        def run_plan(chosen):
            validate(chosen.spec, catalog, facts)  # the same gate as `run`, against these hosts
            try:
                return _run(chosen.spec, chosen, fleet, out, strategy=strategy, budget=budget, seed=seed,
                            verify_repeats=verify_repeats, baseline_repeats=None, run_dir=None, keep_best=False)
            finally:  # the next experiment, and a "no" to keeping, start from the original values
                fleet.map(lambda h: h.request("restore", {}))

        io = ChatIO(
            ask=ask, say=lambda t: console.print(f"[bold]tunefleet>[/] {t}"), note=lambda t: out.print(f"note: {t}"),
            show_plan=lambda p: _show_plan(out, p.spec, p, None, fleet.names),
            confirm_run=lambda q: yes or typer.confirm(q, err=True),
            confirm_keep=lambda q: not yes and typer.confirm(q, err=True),  # --yes never keeps
            run=run_plan, show_result=lambda r: print_result(console, r),
            keep=lambda r: kept.append(_keep_best(fleet, r)))
        summary = converse(config, facts, io, catalog=catalog, hosts=len(fleet.hosts), on_event=_strategist_events())
        out.print(f"[dim]{config.describe()}: {summary.usage['requests']} requests, "
                  f"{summary.usage['total_tokens']} tokens[/]")
    finally:
        restored = fleet.close(keep=bool(kept))
    for name, o in restored.items():
        if not o.ok:
            _error(f"{name}: could not restore: {o.error.message}; run `tunefleet restore --hosts {hosts}`")
    if fleet.failed or any(not o.ok for o in restored.values()):
        raise typer.Exit(1)


def _profiles_to_compare(names: list[str], chosen) -> list[str]:
    """--compare's profile names, checked ('auto': the profiles that fit the built-in workload)."""
    from controller import profiles

    out = []
    for name in names:
        if name == "auto":
            if chosen is None or getattr(chosen, "strategist", "builtin") != "builtin":
                raise UserError("--compare auto needs a built-in workload (a goal the built-in catalog plans); "
                                "name the profiles instead (tunefleet profiles lists them)")
            out += [p.name for p in profiles.for_workload(chosen.workload)] if chosen.workload in \
                profiles.workload_keys() else []
        else:
            out.append(profiles.get(name).name)  # an unknown name: one line listing the known ones
    return list(dict.fromkeys(out))


def _run(spec, chosen, fleet, out, *, strategy, budget, seed, verify_repeats, baseline_repeats, run_dir, keep_best,
         policy=None, confirm_top=3, persist_file=None, tensorboard=False, invocation=None, resume=None,
         rejoin_window=180.0, rejoin_interval=3.0, force=False, compare=(), catalog=None):
    from controller import tblog
    from controller.live import LiveReporter
    from controller.runs import RunDir
    from controller.tuner import RunOptions, tune

    run = resume.run if resume is not None else RunDir.create(spec.workload_name, run_dir)
    if resume is None:
        run.write("spec.json", spec.to_dict())
        run.write("plan.json", _plan_record(spec, chosen))
    budget = budget or int(spec.training_config.get("total_timesteps") or 24)
    options = RunOptions(strategy=strategy, budget=budget, seed=seed, verify_repeats=verify_repeats, policy=policy,
                         baseline_repeats=baseline_repeats, confirm_top=confirm_top, invocation=invocation,
                         tensorboard_dir=run.path / "tensorboard" if tensorboard else None,
                         rejoin_window=rejoin_window, rejoin_interval=rejoin_interval,
                         compare=tuple(compare), catalog=catalog)
    try:
        with LiveReporter(out, fleet.names, budget, spec.goal, spec.reward_metric,
                          verbose=VERBOSITY["verbose"]) as live, tblog.reporting(live, options.tensorboard_dir) as reporter:
            result = tune(spec, fleet, run, options, reporter, resume=resume)
        if persist_file and not result["success"]:
            out.print("[yellow]not persisting:[/] no significant improvement to keep")
        persist_file = persist_file if result["success"] else None
        if keep_best or persist_file:
            result["kept"] = _keep_best(fleet, result)
        if persist_file:
            note = f"{spec.workload_name}, run {run.path}"
            written = fleet.map(lambda h: h.request("persist", {"values": result["best_config"], "path": persist_file,
                                                                "note": note, "force": force}),
                                _in_run(fleet, result))
            result["persisted"] = {n: o.value["path"] if o.ok else f"error: {o.error}" for n, o in written.items()}
            result["persist_overrides"] = {n: o.value.get("overrides", {}) for n, o in written.items() if o.ok}
        run.write("result.json", result)
    finally:
        run.close()
    _write_report(run.path)
    return result


def _given(ctx: typer.Context, **values) -> dict:
    """The parameters among `values` (by name) that the command line gave, keyed as the user wrote
    them (--budget, GOAL). Defaults are left out: an option not given keeps what the run recorded."""
    def label(name: str) -> str:
        first = next(p.opts[0] for p in ctx.command.params if p.name == name)
        return first if first.startswith("-") else first.upper()

    return {label(n): v for n, v in values.items()
            if getattr(ctx.get_parameter_source(n), "name", None) == "COMMANDLINE"}


def _write_report(run_dir: Path) -> None:
    """report.html beside result.json; a failure here must not hide the result the run measured."""
    from controller.htmlreport import write_report

    try:
        write_report(run_dir)
    except Exception as e:  # noqa: BLE001 - the run is done and the hosts restored: say it, carry on
        _error(f"could not write report.html ({type(e).__name__}: {e}); `tunefleet report {run_dir}` retries")


def _report_line(result: dict, stream) -> None:
    """The last line of a run: where to look next."""
    page = Path(result.get("run_dir", "")) / "report.html"
    if page.is_file():
        print(f"report: {page}", file=stream)


def _print_outcome(console, result: dict, hosts) -> None:
    if result.get("persisted"):
        where = sorted(set(result["persisted"].values()))
        console.print(f"kept the best configuration and wrote it to {', '.join(where)} on every host; "
                      f"`tunefleet restore --hosts {hosts} --unpersist` undoes both")
    elif result.get("kept"):
        console.print("kept the best configuration on every host (until reboot); "
                      f"`tunefleet restore --hosts {hosts}` brings the originals back")
    elif result.get("drift"):
        console.print("every knob tunefleet still owned is back on its original value; knobs someone else changed "
                      f"during the run are left as they set them (see above): {', '.join(result['drift'])}")
    elif result.get("dropped"):
        console.print("every host still in the run is back on its original values; "
                      f"dropped (see above): {', '.join(result['dropped'])}")
    else:
        console.print("every host is back on its original values")


def _in_run(fleet, result: dict) -> list[str]:
    """The hosts still in the run at its end: a dropped one (lost, failing, or changed by someone
    else) gets nothing kept or persisted."""
    return [n for n in fleet.hosts if n not in (result.get("dropped") or {})]


def _keep_best(fleet, result: dict) -> dict:
    from controller.report import print_changes

    hosts = _in_run(fleet, result)
    print_changes(_console(stderr=True), {n: fleet.hosts[n].facts for n in hosts}, result["best_config"])
    applied = fleet.map(lambda h: h.request("apply", {"values": result["best_config"]}), hosts)
    return {n: o.value["applied"] if o.ok else str(o.error) for n, o in applied.items()}


RunsDirOpt = typer.Option(None, "--runs-dir", help="Where runs are kept (default: ./runs, or TUNEFLEET_RUNS).")


def _run_folder(run_name: str, runs_dir: Optional[Path]) -> Path:
    from controller.history import DEFAULT_ROOT, resolve_run

    return resolve_run(run_name, runs_dir or DEFAULT_ROOT)


@app.command()
def report(
    run_name: str = typer.Argument(..., metavar="RUN", help="Run folder, or its name under the runs folder."),
    open_it: bool = typer.Option(False, "--open", help="Open the report in a web browser."),
    runs_dir: Optional[Path] = RunsDirOpt,
) -> None:
    """Rebuild a run's report.html (one self-contained page) from its run folder."""
    from controller.htmlreport import write_report

    path = write_report(_run_folder(run_name, runs_dir))
    print(f"report: {path}")
    if open_it:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            _error(f"no web browser found; open {path} yourself")
            raise typer.Exit(1)


@app.command()
def runs(
    runs_dir: Optional[Path] = RunsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of runs."),
) -> None:
    """List past runs: when, what workload, how, on which hosts, and what was verified."""
    from controller.history import DEFAULT_ROOT, list_runs, print_runs

    found = list_runs(runs_dir or DEFAULT_ROOT)
    if as_json:
        print(json.dumps([r.summary() for r in found], indent=2))
    elif not found:
        _console().print(f"no runs in {runs_dir or DEFAULT_ROOT}")
    else:
        print_runs(_console(), found)


@app.command()
def show(
    run_name: str = typer.Argument(..., metavar="RUN", help="Run folder, or its name under the runs folder."),
    runs_dir: Optional[Path] = RunsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the result JSON."),
) -> None:
    """Print one run's result the way `run` printed it."""
    from controller.history import load_run
    from controller.report import print_result

    record = load_run(_run_folder(run_name, runs_dir), trials=False)
    if record.result is None:
        raise UserError(f"{record.path}: the run has no result (interrupted or failed)")
    if as_json:
        print(json.dumps(record.result, indent=2))
    else:
        print_result(_console(), record.result)


@app.command()
def export(
    run_name: str = typer.Argument(..., metavar="RUN", help="Run folder, or its name under the runs folder."),
    fmt: str = typer.Option(..., "--format", "-f", help="sysctl.d, tuned, ansible, shell or json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here (tuned: a profile directory) "
                                          "instead of printing."),
    include: Optional[str] = typer.Option(None, "--include", help="tuned: the profile the hosts run today, to build on "
                                          "(default: the one the hosts reported, if any)."),
    force: bool = typer.Option(False, "--force", help="Export a result that is not a verified improvement, and "
                               "replace an existing --output."),
    runs_dir: Optional[Path] = RunsDirOpt,
) -> None:
    """Write a run's verified best configuration as a sysctl.d drop-in, TuneD profile, Ansible playbook,
    shell script or JSON."""
    from controller import export as exporter
    from controller.history import load_run

    record = load_run(_run_folder(run_name, runs_dir), trials=False)
    text = exporter.render(record, fmt, force=force, include=include or exporter.current_profile(record))
    if output is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {exporter.write(text, fmt, output, overwrite=force)}", file=sys.stderr)


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
