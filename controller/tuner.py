"""A tuning run from validated spec to verified result.

    originals -> setup (the spec's setup, its service started) -> baseline (repeats) -> search (a
    strategy, within the budget) -> best candidate -> verification (original vs best, and every
    compared profile, interleaved on every host) -> result

Hosts are restored by the caller closing the fleet (each agent writes its journal back on bye).
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from threading import Event
from typing import Any, Protocol

from controller import lifecycle, profiles, timing, training
from controller import resume as resuming
from controller.catalog import Catalog
from controller.errors import AgentError, SpecError, TunefleetError
from controller.fleet.executor import ThreadExecutor, gather
from controller.fleet.fleet import Fleet, read_originals
from controller.fleet.rejoin import Rejoiner
from controller.learn import arms, features, paired, stats
from controller.learn.arms import Arm
from controller.learn.evaluation import HostEvaluator, Measure, Recorder, Trial
from controller.learn.importance import knob_importance
from controller.learn.policystore import PolicyStore, fleet_kernel_family
from controller.learn.search import STRATEGIES, SearchContext, auto_choice, bring_back, say_drift
from controller.learn.select import pick_best
from controller.rewards import change_pct
from controller.runs import RunDir
from controller.spec import TuningSpec
from node_agent.protocol import E_DRIFT


@dataclass
class RunOptions:
    strategy: str = "auto"                # ppo from a well-trained stored policy, else bo (search.auto_choice)
    budget: int = 24
    seed: int = 0
    baseline_repeats: int | None = None   # default: the spec's
    verify_repeats: int = 5               # A/B pairs per host
    episode_steps: int = 2                # PPO: evaluations per episode (docs/strategies.md, the environment)
    confirm_top: int = 3                  # re-measure this many top candidates before choosing (0: off)
    confirm_repeats: int | None = None    # runs per candidate per host (default: >= 3 per candidate in all)
    min_effect_pct: float = 5.0           # smallest change worth finding: warn when the noise hides it
    policy: str | None = None             # ppo: None = the store's compatible policy, "none" = cold, else a path
    policy_store: PolicyStore | None = None  # default: controller.learn.policystore.default_root()
    tensorboard_dir: Path | None = None   # --tensorboard: RUN_DIR/tensorboard (see controller/tblog.py)
    invocation: dict | None = None        # how the run was started (inventory, --limit, ...): options.json
    cancel: Event | None = None           # once set, no evaluation starts (controller/job.py)
    compare: tuple[str, ...] = ()         # expert profiles measured beside the winner (controller/learn/arms.py)
    catalog: Catalog | None = None        # default: the built-in one; says when knobs take effect
    rejoin_window: float = 180.0          # a lost host is reconnected for this long (seconds) ...
    rejoin_interval: float = 3.0          # ... trying every this many seconds (controller/fleet/rejoin.py)


class Reporter(Protocol):
    def phase(self, name: str, detail: str = "") -> None: ...
    def trial(self, trial: Trial) -> None: ...
    def message(self, text: str) -> None: ...


class QuietReporter:
    def phase(self, name: str, detail: str = "") -> None:
        pass

    def trial(self, trial: Trial) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class Setup:
    """What a run prepared before its first measurement: the hosts' originals, the compared arms,
    the evaluators that measure every run alike."""

    originals: dict[str, dict[str, str]]
    arms: list[Arm]
    recorder: Recorder
    evaluators: dict[str, HostEvaluator]
    prepared: Callable[..., Any] | None = None  # re-prepares a host that rejoins (its service is gone after a reboot)
    pairs: dict | None = None  # client -> server, for a benchmark with a partner


def tune(spec: TuningSpec, fleet: Fleet, run: RunDir, options: RunOptions, reporter: Reporter | None = None,
         resume: resuming.Resume | None = None) -> dict:
    """`resume`: a controller.resume.Resume whose finished phases are taken from the run folder."""
    reporter = reporter or QuietReporter()
    if options.strategy not in STRATEGIES:
        raise SpecError(f"unknown strategy '{options.strategy}' (known: {', '.join(STRATEGIES)})")
    if options.strategy == "auto":
        options = _resolve_auto(spec, fleet, options, reporter)
    setup = _set_up(spec, fleet, run, options, reporter)
    policy = _policy_plan(spec, fleet, options, reporter)  # a policy that cannot be used fails before any change
    resuming.record_options(run, options, options.invocation)
    if resume is not None:
        resume.attach(setup.recorder, setup.evaluators)
    evaluators = setup.evaluators
    _watch(fleet, setup.originals, evaluators, reporter)
    executor = ThreadExecutor(len(evaluators))
    rejoiner, ctx = _rejoiner(fleet, setup.originals, options), None
    try:
        baselines, warnings = _baseline_phase(evaluators, executor, options, spec, run, reporter, resume, rejoiner,
                                              setup.prepared)
        reporter.phase("search", f"{options.strategy}, budget {options.budget} evaluations")
        ctx = SearchContext(
            spec=spec, evaluators=evaluators, originals=setup.originals,
            baseline_metrics={n: b["metrics"] for n, b in baselines.items()},
            executor=executor, recorder=setup.recorder, budget=options.budget, seed=options.seed,
            checkpoint_dir=run.checkpoints if options.strategy == "ppo" else None,
            episode_steps=options.episode_steps, log=reporter.message,
            training=spec.training_config, policy_in=policy.get("path_in"), policy_out=policy.get("path_out"),
            tensorboard_dir=options.tensorboard_dir, rejoiner=rejoiner, prepare=setup.prepared,
        )
        if resume is not None:
            resume.prepare_search(ctx)
        STRATEGIES[options.strategy](ctx)
        _store_policy(policy, spec, run, setup.recorder, reporter)
        if not any(t.ok for t in setup.recorder.search_trials()):
            raise TunefleetError("the search produced no successful evaluation; see trials.jsonl in " + str(run.path))
        selection = pick_best(ctx, top_k=options.confirm_top, repeats=options.confirm_repeats, phase=reporter.phase)
        assert selection is not None  # the search had a successful evaluation (above)
        summary = _verify_phase(ctx, setup, selection.trial.values, options, reporter)
    finally:
        executor.shutdown()
        if rejoiner is not None:  # a reconnection still under way ends with the run
            verdicts = rejoiner.close()
            if ctx is not None:
                ctx.take_back(verdicts)
    result = _result(spec, options, run, setup.recorder, ctx, baselines, selection.trial, summary)
    result.update(confirm=selection.to_dict(), importance=_importance(setup.recorder, spec), warnings=warnings)
    if setup.pairs:
        result["pairs"] = setup.pairs
    if resume is not None:
        result["resumed"] = resume.summary()
    if options.strategy == "ppo":
        result["policy"] = {"started_from": policy.get("started_from"), "saved": policy.get("saved")}
    return result


def _set_up(spec: TuningSpec, fleet: Fleet, run: RunDir, options: RunOptions, reporter: Reporter) -> Setup:
    """Originals of every knob the run may touch, the compared arms, the steps before every measured
    run, and each host prepared (setup commands, its service started); a host whose preparation
    fails is left out, saying why."""
    catalog = options.catalog or Catalog.default()
    profile_arms = _plan_arms(fleet, options.compare, catalog, reporter)
    originals = read_originals(fleet, list(dict.fromkeys(spec.knob_names + arms.knobs_of(profile_arms))))
    run.write("hosts.json", {n: {"facts": h.facts, "originals": originals[n]} for n, h in fleet.hosts.items()})
    restart = timing.needs_restart(spec, catalog, arms.knobs_of(profile_arms))
    if restart:
        assert spec.service is not None  # only a spec's service is restarted
        reporter.message(f"{spec.service.name} is restarted before every measured run (a knob of this run takes "
                         "effect only when a server listens again)")
    recorder = Recorder(_trial_sink(run, fleet), [reporter.trial])
    if spec.peer is not None:  # the evaluated hosts are the clients; their servers follow their values
        link = ", the emulated link" if spec.peer.link else ""
        reporter.phase("setup", "pairs, the service on every server" + link)
        measures, _ = paired.set_up(spec, fleet, originals, restart, reporter.message)
        evaluators = {n: HostEvaluator(fleet.hosts[n], spec, recorder, m, options.cancel) for n, m in measures.items()}
        if not evaluators:
            raise TunefleetError("no pair of hosts could be prepared; see the messages above")
        return Setup(originals, profile_arms, recorder, evaluators, None,
                     {c: m.server.name for c, m in measures.items()})
    measure = Measure(spec, before=lifecycle.before_each_run(spec, restart))
    evaluators = {n: HostEvaluator(h, spec, recorder, measure, options.cancel) for n, h in fleet.hosts.items()}
    prepare = None
    if lifecycle.has_steps(spec):
        reporter.phase("setup", "setup and service start on every host")
        prepare = functools.partial(lifecycle.prepare_host, spec=spec)
        for name, out in fleet.map(prepare).items():
            if out.error is not None:
                evaluators[name].dropped = out.error.message
                reporter.message(f"dropping {name} from the run: {out.error.message}")
    return Setup(originals, profile_arms, recorder, evaluators, prepare)


def _plan_arms(fleet: Fleet, names, catalog: Catalog, reporter: Reporter) -> list[Arm]:
    """The profiles to compare with, each reduced to what these hosts can take."""
    if not names:
        return []
    knobs = list(dict.fromkeys(k for n in names for k in profiles.get(n).values))
    described = fleet.map(lambda h: h.request("describe", {"names": knobs}))
    facts = {n: {**h.facts, "knobs": {**(h.facts.get("knobs") or {}), **(described[n].value or {})}}
             for n, h in fleet.hosts.items() if described[n].ok}
    out = []
    for name in dict.fromkeys(names):
        arm = arms.plan_profile(name, facts, catalog)
        for knob, why in arm.left_out.items():
            reporter.message(f"{name}: {knob} left out: {why}")
        if not arm.bounds:
            reporter.message(f"{name}: none of its sysctls can be applied on these hosts; it is not measured")
            continue
        out.append(arm)
    return out


def _baseline_phase(evaluators, executor, options: RunOptions, spec: TuningSpec, run: RunDir, reporter: Reporter,
                    resume: resuming.Resume | None, rejoiner=None, prepare=None):
    """The baseline, with repeats, each host on its own original values; and what its noise means."""
    repeats = options.baseline_repeats or spec.baseline_repeats
    reporter.phase("baseline", f"{repeats} runs per host")
    if resume is not None and resume.baseline is not None:
        baselines = resume.baselines()
    else:
        baselines = _baseline(evaluators, executor, repeats, reporter, rejoiner, prepare)
        resuming.record_baseline(run, baselines, evaluators)
    if not any(ev.baseline is not None for ev in evaluators.values()):
        raise TunefleetError("no host produced a baseline: " +
                             "; ".join(f"{n}: {ev.dropped}" for n, ev in evaluators.items()))
    warnings = _noise_warnings(baselines, options)
    for text in warnings:
        reporter.message(text)
    return baselines, warnings


def _verify_phase(ctx: SearchContext, setup: Setup, best: dict[str, str], options: RunOptions,
                  reporter: Reporter) -> dict:
    """Original against the winner (and every compared profile), interleaved, on every live host."""
    everyone = [Arm(arms.ORIGINAL), Arm(arms.BEST), *setup.arms]
    arms.complete(everyone, ctx.spec.knob_names, setup.originals, best)
    what = " vs ".join(a.name for a in everyone)
    reporter.phase("verify", f"{what}, {options.verify_repeats} runs of each per host")
    samples = arms.verify(ctx, everyone, options.verify_repeats)
    return arms.summarize(samples, everyone, ctx.spec, options.seed)


def _resolve_auto(spec: TuningSpec, fleet: Fleet, options: RunOptions, reporter: Reporter) -> RunOptions:
    """--strategy auto: ppo from a trained policy when there is one, bo otherwise (search.auto_choice)."""
    store = options.policy_store or PolicyStore()
    kernel = fleet_kernel_family({n: h.facts for n, h in fleet.hosts.items()})
    strategy, why = auto_choice(spec, kernel, options.policy, store)
    reporter.message(f"strategy auto: {why}")
    return replace(options, strategy=strategy, policy_store=store)


def _policy_plan(spec: TuningSpec, fleet: Fleet, options: RunOptions, reporter: Reporter) -> dict:
    """Which saved policy PPO starts from (--policy PATH, the store's compatible one, or none) and
    where it saves the one it trains. Other strategies have no policy."""
    if options.strategy != "ppo":
        return {}
    from controller.learn.ppo import check_policy  # here: torch and stable-baselines3, for ppo runs only

    store = options.policy_store or PolicyStore()
    kernel = fleet_kernel_family({n: h.facts for n, h in fleet.hosts.items()})
    mode = training.action_mode(spec.training_config)
    plan = {"store": store, "kernel": kernel, "path_out": store.new_path(), "started_from": None, "saved": None,
            "action_mode": mode}
    if options.policy and options.policy != "none":
        path = Path(options.policy).expanduser()
        if not path.is_file():
            raise SpecError(f"--policy {options.policy}: no such file")
        check_policy(path, spec.action_dim, mode)
        plan.update(path_in=path, started_from=str(path))
        reporter.message(f"ppo starts from the policy {path}")
    elif options.policy is None:
        entry = store.find(spec, kernel, mode)
        if entry is not None:
            check_policy(entry.path(store.root), spec.action_dim, mode)
            plan.update(path_in=entry.path(store.root), started_from=str(entry.path(store.root)))
            reporter.message(f"ppo starts from the stored policy {entry.describe()} (--policy none: start cold)")
    return plan


def _store_policy(plan: dict, spec: TuningSpec, run: RunDir, recorder: Recorder, reporter: Reporter) -> None:
    """Index the policy the run trained, so the next run on these knobs starts from it."""
    path = plan.get("path_out")
    if path is None or not path.exists():
        return
    plan["store"].add(path, spec, plan["kernel"], action_mode=plan["action_mode"],
                      evaluations=recorder.search_evaluations, run_dir=str(run.path),
                      started_from=plan["started_from"])
    plan["saved"] = str(path)


def _rejoiner(fleet: Fleet, originals: dict[str, dict[str, str]], options: RunOptions):
    """Hosts whose agent is lost are reconnected and judged (controller/fleet/rejoin.py), the way
    the fleet connected them (threads or Ray actors), within the run's rejoin window."""
    if fleet.options is None:  # a fleet that was not connected here (a simulated one) cannot be reconnected
        return None
    return Rejoiner(fleet, originals, within=options.rejoin_window, every=options.rejoin_interval)


def _watch(fleet: Fleet, originals: dict[str, dict[str, str]], evaluators: dict[str, HostEvaluator],
           reporter: Reporter) -> None:
    """Tell every agent the values its baseline is measured on: from now on any other value of a
    tuned knob that tunefleet did not write is someone else's change (node_agent/drift.py)."""
    if fleet.options is None:  # a simulated fleet has no agents
        return
    outcomes = fleet.map(lambda h: h.request("watch", {"values": originals[h.name]}))
    for name, out in outcomes.items():
        if out.error is None:
            continue
        if isinstance(out.error, AgentError) and out.error.etype == E_DRIFT:
            evaluators[name].stop_for_drift(out.error.details.get("drift") or {})
            say_drift(evaluators[name], reporter.message)
        else:
            raise out.error


def _trial_sink(run: RunDir, fleet: Fleet):
    """Appends to trials.jsonl; with Ray workers each line also says where its host's session ran
    (looked up per trial: a host that rejoined the run did so in another actor)."""
    if not any(h.facts.get("worker") for h in fleet.hosts.values()):
        return run.append_trial

    def append(trial: dict) -> None:
        host = fleet.hosts.get(trial["host"])
        run.append_trial({**trial, "worker": host.facts.get("worker") if host is not None else None})

    return append


def _baseline(evaluators: dict[str, HostEvaluator], executor, repeats: int, reporter: Reporter,
              rejoiner=None, prepare=None) -> dict[str, dict]:
    def measure(ev: HostEvaluator) -> dict:
        trials: list[Trial] = []
        while len(trials) < repeats and not ev.dropped:
            t = ev.evaluate(None, phase="baseline")
            if ev.lost or ev.drift is not None:  # measured again once the host is back on its originals
                if bring_back(rejoiner, ev, reporter.message, prepare):
                    continue
                break
            trials.append(t)
        good = [t for t in trials if t.ok]
        if ev.dropped:
            return {}
        if not good:
            ev.dropped = f"the baseline benchmark failed: {trials[-1].error}"
            reporter.message(f"dropping {ev.name} from the run: {ev.dropped}")
            return {}
        raws = [t.raw for t in good if t.raw is not None]  # every good run has its figure
        ev.baseline = statistics.median(raws)
        ev.baseline_aggregates = features.mean_aggregates([t.aggregates for t in good])
        summary = stats.summarize(raws)
        keys = set().union(*(t.metrics for t in good))
        metrics = {k: statistics.fmean(t.metrics.get(k, 0.0) for t in good) for k in keys}
        return {"samples": raws, "summary": summary.to_dict(), "metrics": metrics}

    names = list(evaluators)
    results = gather([executor.submit(measure, evaluators[n]) for n in names])
    return {n: r for n, r in zip(names, results) if r}


def _noise_warnings(baselines: dict[str, dict], options: RunOptions) -> list[str]:
    """One sentence per host whose baseline noise hides the smallest effect worth finding."""
    out = []
    for name, b in baselines.items():
        text = stats.noise_warning(stats.Summary(**b["summary"]), options.min_effect_pct, options.verify_repeats)
        if text:
            out.append(f"{name}: {text}")
    return out


def _importance(recorder: Recorder, spec: TuningSpec) -> dict[str, float]:
    """Which knobs mattered, from the search's evaluations with the rewards the search saw (relative
    to each host's baseline, so hosts pool; a setting that makes the benchmark fail scores the
    floor, which is an effect too). Re-measurements of the top candidates are left out: they
    would weigh a few good settings many times. A lost agent says nothing about the knobs."""
    trials = [t.to_dict() for t in recorder.search_trials() if not (t.error or "").startswith(("agent lost", "drift:"))]
    return {k: round(v, 4) for k, v in knob_importance(trials, spec.knob_names).items()}


def _result(spec: TuningSpec, options: RunOptions, run: RunDir, recorder: Recorder, ctx: SearchContext,
            baselines: dict, best: Trial, summary: dict) -> dict:
    goal = spec.goal
    per_host = {}
    for name, ev in ctx.evaluators.items():
        entry = {
            "baseline": baselines.get(name, {}).get("summary"),
            "best_seen": _best_seen(recorder.search_trials(name), ev.baseline, goal),
            "evaluations": len(recorder.search_trials(name)),
            "failures": sum(1 for t in recorder.search_trials(name) if not t.ok),
            "dropped": ev.dropped,
            **({"rejoined": ev.rejoined} if ev.rejoined else {}),
            **({"drift": ev.drift} if ev.drift is not None else {}),
            **({"worker": ev.host.facts["worker"]} if ev.host.facts.get("worker") else {}),
        }
        if name in summary["per_host"]:
            entry["verification"] = summary["per_host"][name]
        per_host[name] = entry

    verification = summary["verification"]
    improvement = verification["change_pct"] if verification else None
    significant = bool(verification and verification["significant"])
    broken = [c for c in summary["constraints"] if (c["arms"].get(arms.BEST) or {}).get("holds") is not True]
    result = {
        # the seed's fields; best_reward and baseline_reward only as verified medians
        "success": bool(significant and improvement is not None and improvement > 0 and not broken),
        "workload_name": spec.workload_name,
        **({"best_reward": verification["best_median"], "baseline_reward": verification["baseline_median"]}
           if verification else {}),
        "best_config": best.values,
        "improvement": improvement,
        # real episodes, for strategies that have them (PPO)
        **({"total_episodes": ctx.episodes} if ctx.episodes is not None else {}),
        # and what makes them trustworthy
        "reward_metric": spec.reward_metric,
        "goal": goal,
        "verdict": _verdict(verification, summary["constraints"]),
        "verification": verification,
        **({"constraints": summary["constraints"]} if summary["constraints"] else {}),
        **({"arms": summary["arms"]} if summary["arms"] else {}),
        **({"observed": summary["observed"]} if any(summary["observed"].values()) else {}),
        "best_seen": {"host": best.host, "values": best.values, "raw": best.raw,
                      "change_pct": _change(best.raw, ctx.evaluators[best.host].baseline, goal), "verified": False},
        "strategy": options.strategy,
        "budget": options.budget,
        "seed": options.seed,
        "evaluations": recorder.search_evaluations,
        "evaluations_total": len(recorder.trials),
        "hosts": per_host,
        "dropped": ctx.dropped,
        "rejoined": {n: ev.rejoined for n, ev in ctx.evaluators.items() if ev.rejoined},
        "drift": {n: {"knobs": ev.drift, "left_as_set": (ev.released or {}).get("foreign") or {},
                      "restored": (ev.released or {}).get("restored") or {}}
                  for n, ev in ctx.evaluators.items() if ev.drift is not None},
        "run_dir": str(run.path),
    }
    return result


def _best_seen(trials: list[Trial], baseline: float | None, goal: str) -> dict | None:
    """A host's best search sample, unverified (None when none succeeded)."""
    scored = [(t.reward, t.raw, t) for t in trials if t.ok and t.reward is not None and t.raw is not None]
    if not scored:
        return None
    reward, raw, best = max(scored, key=lambda s: s[0])
    return {"values": best.values, "raw": raw, "reward": round(reward, 4), "change_pct": _change(raw, baseline, goal)}


def _change(raw: float | None, baseline: float | None, goal: str) -> float | None:
    """Percent change of the raw metric against the host's baseline (not of the log reward)."""
    if raw is None:
        return None
    pct = change_pct(raw, baseline or 0.0, goal)
    return None if pct is None else round(pct, 2)


def _verdict(v: dict | None, constraints: Sequence[dict] = ()) -> str:
    if not v:
        return "not verified: no host completed the verification"
    broken = [(c, (c["arms"].get(arms.BEST) or {})) for c in constraints]
    broken = [(c, b) for c, b in broken if b.get("holds") is not True]
    if v["significant"] and v["change_pct"] > 0 and broken:
        c, b = broken[0]
        how = "breaks" if b.get("holds") is False else "may break"
        limit = f"<= {c['max']:g}" if "max" in c else f">= {c['min']:g}"
        shown = (f"median {b['median']:.3g}, 95% CI {b['ci_low']:.3g} to {b['ci_high']:.3g}" if b else "not measured")
        return (f"not claimed: {v['change_pct']:+.1f}% (95% CI {v['ci_low_pct']:.1f}% to {v['ci_high_pct']:.1f}%), "
                f"but the best configuration {how} the constraint {c['metric']} {limit} ({shown})")
    if v["significant"] and v["change_pct"] > 0:
        return (f"improvement of {v['change_pct']:.1f}% "
                f"(95% CI {v['ci_low_pct']:.1f}% to {v['ci_high_pct']:.1f}%, p={v['p_value']:.3g})")
    if v["significant"]:
        return (f"the best candidate is WORSE than the original by {-v['change_pct']:.1f}% "
                f"(95% CI {v['ci_low_pct']:.1f}% to {v['ci_high_pct']:.1f}%)")
    return (f"no significant improvement: {v['change_pct']:+.1f}% "
            f"(95% CI {v['ci_low_pct']:.1f}% to {v['ci_high_pct']:.1f}%, p={v['p_value']:.3g})")
