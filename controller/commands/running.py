"""Commands that run: `run` and `chat`, both through the one run API (controller/job.py).

The command parses and prints; the library plans, validates, runs and records. Between connecting
and running, the command shows the plan and asks before it changes any host.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import typer

from controller.commands.common import (
    VERBOSITY,
    AcceptOpt,
    HostsOpt,
    LimitOpt,
    ModelOpt,
    SSHConfigOpt,
    TimeoutOpt,
    WorkersOpt,
    _connect,
    _console,
    _error,
    _host_facts,
    _json_stdout,
    _reachable_facts,
    _strategist_events,
)
from controller.commands.plans import _make_plan, _show_plan
from controller.errors import UserError
from controller.frontend import budget_for, load_catalog, origin, plan_record, profiles_to_compare, select

if TYPE_CHECKING:
    from controller.spec import TuningSpec

STRATEGY_HELP = ("Search strategy: auto (ppo from a well-trained stored policy, else bo; docs/strategies.md), ppo, bo "
                 "(Bayesian, optuna), random.")


def run(
    ctx: typer.Context,
    goal: str | None = typer.Argument(None, help="What the hosts are for, in plain words."),
    hosts: Path | None = typer.Option(None, "--hosts", "-i", help=HostsOpt.help + " Required unless --resume."),
    limit: str | None = LimitOpt,
    spec_file: Path | None = typer.Option(None, "--spec",
                                          help="Run this spec file (JSON or YAML) instead of planning."),
    strategy: str = typer.Option("auto", "--strategy", help=STRATEGY_HELP),
    budget: int | None = typer.Option(None, "--budget", min=1, help="Benchmark evaluations to spend on the search, "
                                      "across the fleet (default: the spec's training_config.total_timesteps, "
                                      "else 24)."),
    policy: str | None = typer.Option(None, "--policy", help="ppo: start from this saved policy (PATH), or 'none' to "
                                      "start cold (default: the policy store's compatible policy, if any)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the search (runs are repeatable up to benchmark noise)."),
    verify_repeats: int = typer.Option(5, "--verify-repeats", min=2, help="Original-vs-best pairs measured per host "
                                       "(a single host needs 4 or more to reach p < 0.05)."),
    baseline_repeats: int | None = typer.Option(None, "--baseline-repeats", min=1, help="Baseline runs per host "
                                                "(default: the spec's)."),
    confirm_top: int = typer.Option(3, "--confirm-top", min=0, help="Re-measure the search's top K configurations "
                                    "before choosing the best (0: trust the best sample)."),
    catalog_file: Path | None = typer.Option(None, "--catalog", help="Extra tunables (YAML/JSON)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run folder (default runs/<time>-<workload>)."),
    keep_best: bool = typer.Option(False, "--keep-best", help="Leave the best configuration applied (not persisted "
                                   "across reboots)."),
    persist: bool = typer.Option(False, "--persist", help="If the improvement is significant, keep the best "
                                 "configuration and write it to a sysctl.d drop-in so it survives reboots."),
    persist_file: str = typer.Option("/etc/sysctl.d/90-tunefleet.conf", "--persist-file", help="The drop-in --persist "
                                     "writes."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before changing hosts."),
    as_json: bool = typer.Option(False, "--json", help="Print only the result JSON on stdout."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan and validate against the hosts, change nothing."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Log the search's results (and PPO's training "
                                     "curves) to RUN_DIR/tensorboard (needs tensorboard)."),
    model: str | None = ModelOpt,
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Path | None = SSHConfigOpt,
    workers: str = WorkersOpt,
    resume_dir: Path | None = typer.Option(None, "--resume", help="Continue the run in this folder that was killed "
                                           "or interrupted, with its spec and options (--hosts: another inventory)."),
    heartbeat_timeout: float = typer.Option(30.0, "--heartbeat-timeout", min=3.0, max=86400.0,
                                            help="Seconds of silence after which a host's agent restores its "
                                            "originals and exits, and the run drops that host."),
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
    args = SimpleNamespace(**{k: v for k, v in locals().items() if k != "ctx"})
    given = _given(ctx, goal=goal, spec_file=spec_file, run_dir=run_dir, budget=budget, strategy=strategy,
                   seed=seed, policy=policy, verify_repeats=verify_repeats, baseline_repeats=baseline_repeats,
                   confirm_top=confirm_top, keep_best=keep_best, persist=persist, persist_file=persist_file,
                   catalog_file=catalog_file and str(catalog_file.resolve()), heartbeat_timeout=heartbeat_timeout,
                   workers=workers, tensorboard=tensorboard, ssh_config=ssh_config and str(ssh_config.resolve()),
                   rejoin_window=rejoin_window, rejoin_interval=rejoin_interval, force=force)
    run_command(args, given)


def run_command(a: SimpleNamespace, given: dict) -> None:
    doc = _json_stdout(a.as_json)
    out = _console(stderr=True)
    resumed = _resumed(a, given, out) if a.resume_dir is not None else None
    if a.hosts is None:
        raise UserError("--hosts is required (or --resume RUN_DIR)")
    catalog = load_catalog(a.catalog_file)
    select(a.hosts, a.limit)  # a bad inventory or --limit fails before any planning
    spec, chosen = _planned(a, catalog)
    request = _request(a, spec, chosen, catalog, resumed)
    _, fleet = _connect(a.hosts, a.limit, a.accept_new_host_keys, a.connect_timeout, spec.knob_names, a.workers,
                        ssh_config=a.ssh_config, heartbeat_timeout=a.heartbeat_timeout)
    result = None
    try:
        if not _ready(a, spec, chosen, catalog, fleet, resumed, out):
            return
        result = _carry_out(request, fleet, out)
    except KeyboardInterrupt:
        out.print("[yellow]interrupted:[/] finishing the benchmarks in flight, then restoring every host")
    finally:
        # Every agent writes its journaled originals back on bye, whatever happened above.
        restored = fleet.close(keep=bool(result is not None and getattr(result, "kept", None)))
    _report(a, result, restored, fleet, doc)


def _resumed(a: SimpleNamespace, given: dict, out):
    """--resume: everything as the run that died recorded it (options.json); consent was given then."""
    from controller.resume import Resume, check_options, reapply

    resumed = Resume.load(a.resume_dir)
    for line in resumed.notes + check_options(resumed.options, given):
        out.print(line)
    reapply(resumed.options, a, given)
    a.spec_file = resumed.run.path / "spec.json"
    return resumed


def _planned(a: SimpleNamespace, catalog):
    """The spec (from --spec, or the goal through a strategist) checked as far as no host is needed."""
    from controller.gate import validate
    from controller.learn.search import STRATEGIES

    facts = None
    if a.goal and a.spec_file is None:  # either strategist plans for what the hosts have (hello only: no change)
        facts = _host_facts(a.hosts, a.limit, a.accept_new_host_keys, a.connect_timeout, knobs=catalog.names(),
                            strict=False, ssh_config=a.ssh_config, workers=a.workers)
    spec, chosen = _make_plan(a.goal, a.spec_file, facts, model=a.model, catalog=catalog)
    validate(spec, catalog, origin=origin(chosen))  # everything that can be refused without a host
    a.compare = profiles_to_compare(a.compare, chosen)
    if a.strategy not in STRATEGIES:
        raise UserError(f"--strategy {a.strategy}: unknown (choose from {', '.join(STRATEGIES)})")
    if a.tensorboard:
        from controller.tblog import require

        require()
    return spec, chosen


def _request(a: SimpleNamespace, spec: TuningSpec, chosen, catalog, resumed):
    """The run as the library takes it (controller/job.py), with how it was started (options.json)."""
    from controller.job import JobRequest
    from controller.tuner import RunOptions

    invocation = {"hosts": str(a.hosts.resolve()), "limit": a.limit,
                  "catalog": str(a.catalog_file.resolve()) if a.catalog_file else None,
                  "ssh_config": str(a.ssh_config.resolve()) if a.ssh_config else None, "workers": a.workers,
                  "keep_best": a.keep_best, "persist_file": a.persist_file if a.persist else None,
                  "tensorboard": a.tensorboard, "heartbeat_timeout": a.heartbeat_timeout,
                  "rejoin_window": a.rejoin_window, "rejoin_interval": a.rejoin_interval, "force": a.force,
                  "compare": list(a.compare)}
    budget = budget_for(spec, a.budget)
    options = RunOptions(strategy=a.strategy, budget=budget, seed=a.seed, verify_repeats=a.verify_repeats,
                         policy=a.policy, baseline_repeats=a.baseline_repeats, confirm_top=a.confirm_top,
                         invocation=invocation, rejoin_window=a.rejoin_window, rejoin_interval=a.rejoin_interval,
                         compare=tuple(a.compare), catalog=catalog)
    return JobRequest(spec, plan_record(spec, chosen), options, run_dir=a.run_dir, keep_best=a.keep_best,
                      persist_file=a.persist_file if a.persist else None, force=a.force, resume=resumed,
                      tensorboard=a.tensorboard)


def _ready(a: SimpleNamespace, spec: TuningSpec, chosen, catalog, fleet, resumed, out) -> bool:
    """The hosts checked against the spec, the plan shown, and consent: False for a dry run."""
    from controller import conflicts
    from controller.gate import validate

    facts = _reachable_facts(fleet)
    validate(spec, catalog, facts, origin=origin(chosen))
    if resumed is not None:
        said = len(resumed.notes)
        resumed.check_fleet(fleet, spec)
        for line in resumed.notes[said:]:
            out.print(line, soft_wrap=True)
        out.print(f"resuming {resumed.run.path} in the {resumed.phase} phase; restored: "
                  f"{resumed.summary()['restored'] or 'nothing, every host was on its originals'}")
    _show_plan(out, spec, chosen, a.spec_file, facts)
    conflicts.preflight(fleet, spec, a.persist_file if a.persist else None, a.force,
                        lambda t: out.print(t, soft_wrap=True))
    if a.dry_run:
        out.print("dry run: nothing was changed")
        return False
    if not a.yes:
        if not sys.stdin.isatty():
            raise UserError("refusing to change hosts without confirmation: pass --yes")
        if not typer.confirm(f"Run this benchmark and change these knobs on {len(fleet.hosts)} host(s)?", err=True):
            raise typer.Exit(1)
    return True


def _carry_out(request, fleet, out):
    """The run, with the live view on the terminal (and TensorBoard's logs when asked)."""
    from controller import tblog
    from controller.job import Job
    from controller.live import LiveReporter

    job = Job(request, fleet)
    folder = job.folder().path
    tensorboard = folder / "tensorboard" if request.tensorboard else None
    request.options.tensorboard_dir = tensorboard
    spec = request.spec
    with LiveReporter(out, fleet.names, request.options.budget, spec.goal, spec.reward_metric,
                      verbose=VERBOSITY["verbose"]) as live, tblog.reporting(live, tensorboard) as reporter:
        return job.run(reporter)


def _report(a: SimpleNamespace, result, restored, fleet, doc) -> None:
    """What the run found, then whether every host is back (the exit status says it too)."""
    from controller.report import print_result

    bad = {n: o.error for n, o in restored.items() if not o.ok}
    for name, err in bad.items():
        _error(f"{name}: could not restore: {err.message}; run `tunefleet restore --hosts {a.hosts}`")
    if result is None:  # a dry run, or interrupted: nothing to report, and the hosts are back as they were
        if a.dry_run:
            return
        print(f"tunefleet: interrupted; {'every host restored' if not bad else 'see the errors above'}",
              file=sys.stderr)
        raise typer.Exit(130)
    data = result.to_dict()
    if a.as_json:
        print(json.dumps(data, indent=2), file=doc)
    else:
        print_result(_console(), data)
        _print_outcome(_console(), data, a.hosts)
    _report_line(data, sys.stderr if a.as_json else sys.stdout)
    if fleet.failed or bad:
        raise typer.Exit(1)


def chat(
    hosts: Path = HostsOpt,
    limit: str | None = LimitOpt,
    model: str | None = ModelOpt,
    strategy: str = typer.Option("auto", "--strategy", help=STRATEGY_HELP),
    budget: int | None = typer.Option(None, "--budget", min=1, help="Benchmark evaluations per optimization, across "
                                      "the fleet (default: the spec's training_config.total_timesteps, else 24)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the search."),
    verify_repeats: int = typer.Option(5, "--verify-repeats", min=2, help="Original-vs-best pairs measured per host "
                                       "(a single host needs 4 or more to reach p < 0.05)."),
    catalog_file: Path | None = typer.Option(None, "--catalog", help="Extra tunables (YAML/JSON)."),
    yes: bool = typer.Option(False, "--yes", "-y",
                             help="Run every validated plan without asking (never keeps results)."),
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Path | None = SSHConfigOpt,
    workers: str = WorkersOpt,
) -> None:
    """Talk to the strategist: it plans, asks before it runs, tunes the hosts and reports what it measured."""
    from controller.strategist.config import resolve

    config = resolve(model)
    if config is None:
        raise UserError("chat needs a model endpoint: set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one), "
                        "or use `tunefleet run GOAL` with the built-in strategist")
    if not yes and not sys.stdin.isatty():
        raise UserError("chat asks before it changes hosts: run it in a terminal, or pass --yes")
    catalog = load_catalog(catalog_file)
    _, fleet = _connect(hosts, limit, accept_new_host_keys, connect_timeout, catalog.names(), workers,
                        ssh_config=ssh_config)
    kept: list = []
    try:
        _converse(config, fleet, catalog, kept, SimpleNamespace(strategy=strategy, budget=budget, seed=seed,
                                                                  verify_repeats=verify_repeats, yes=yes))
    finally:
        restored = fleet.close(keep=bool(kept))
    for name, o in restored.items():
        if not o.ok:
            _error(f"{name}: could not restore: {o.error.message}; run `tunefleet restore --hosts {hosts}`")
    if fleet.failed or any(not o.ok for o in restored.values()):
        raise typer.Exit(1)


def _converse(config, fleet, catalog, kept: list, a: SimpleNamespace) -> None:
    """The conversation: every plan the user accepts runs through the same run API as `run`."""
    from controller.gate import validate
    from controller.job import JobRequest, keep
    from controller.report import print_result
    from controller.strategist.chat import ChatIO
    from controller.strategist.chat import chat as converse
    from controller.tuner import RunOptions

    out, console = _console(stderr=True), _console()
    facts = _reachable_facts(fleet)

    def ask():
        try:
            return console.input("[bold]you>[/] ")
        except EOFError:
            return None

    def run_plan(chosen):
        validate(chosen.spec, catalog, facts)  # the same gate as `run`, against these hosts
        options = RunOptions(strategy=a.strategy, seed=a.seed, verify_repeats=a.verify_repeats, catalog=catalog,
                             budget=budget_for(chosen.spec, a.budget))
        try:
            return _carry_out(JobRequest(chosen.spec, plan_record(chosen.spec, chosen), options), fleet,
                              out).to_dict()
        finally:  # the next experiment, and a "no" to keeping, start from the original values
            fleet.map(lambda h: h.request("restore", {}))

    io = ChatIO(
        ask=ask, say=lambda t: console.print(f"[bold]tunefleet>[/] {t}"), note=lambda t: out.print(f"note: {t}"),
        show_plan=lambda p: _show_plan(out, p.spec, p, None, fleet.names),
        confirm_run=lambda q: a.yes or typer.confirm(q, err=True),
        confirm_keep=lambda q: not a.yes and typer.confirm(q, err=True),  # --yes never keeps
        run=run_plan, show_result=lambda r: print_result(console, r),
        keep=lambda r: kept.append(keep(fleet, r)))
    summary = converse(config, facts, io, catalog=catalog, hosts=len(fleet.hosts), on_event=_strategist_events())
    out.print(f"[dim]{config.describe()}: {summary.usage['requests']} requests, {summary.usage['total_tokens']} "
              "tokens[/]")


def _given(ctx: typer.Context, **values) -> dict:
    """The parameters among `values` (by name) that the command line gave, keyed as the user wrote
    them (--budget, GOAL). Defaults are left out: an option not given keeps what the run recorded."""
    def label(name: str) -> str:
        first = next(p.opts[0] for p in ctx.command.params if p.name == name)
        return first if first.startswith("-") else first.upper()

    return {label(n): v for n, v in values.items()
            if getattr(ctx.get_parameter_source(n), "name", None) == "COMMANDLINE"}


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
    elif result.get("status") == "cancelled":
        console.print("cancelled; every host is back on its original values")
    else:
        console.print("every host is back on its original values")
