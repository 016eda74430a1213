"""One evaluation path for every strategy: apply knob values on a host, run the benchmark,
parse the reward metric, record the trial. PPO, random and Bayesian search all go through it,
so they are compared on equal terms."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from controller.errors import AgentError, AgentGone, Cancelled, SpecError, TunefleetError
from controller.fleet.executor import Executor, Then
from controller.fleet.fleet import Host
from controller.learn import features as feat
from controller.rewards import change_pct
from node_agent.protocol import E_DRIFT as DRIFT

if TYPE_CHECKING:
    from controller.spec import TuningSpec

# The reward is the log of the ratio to the host's own baseline (sign flipped for a minimized
# metric): 0 = as good as the original, ln 2 = twice as good, and a 100x gain scores twice a 10x
# one, so nothing saturates a few times above the baseline and nothing compresses near a floor.
# Beyond SOFT_BOUND (10^4 times better or worse) the log is squashed smoothly towards 2 x SOFT_BOUND,
# so one absurd sample (a benchmark that printed 0) cannot dominate a policy update.
SOFT_BOUND = math.log(1e4)
# A failed apply or benchmark scores as if it were 10^4 times worse than the original: below any
# real measurement seen so far (the worst, an accept storm 1000x slower, scores -6.9), and bounded.
FAILURE_REWARD = -SOFT_BOUND


@dataclass
class Trial:
    host: str
    phase: str                    # baseline | search | confirm | verify
    values: dict[str, str]        # the knob values in force during the benchmark
    index: int = -1               # evaluation number across the run (search phase: counts toward the budget)
    raw: float | None = None      # the reward metric as the benchmark printed it
    reward: float | None = None   # log-ratio to the host's baseline (see relative_reward); None in the baseline phase
    change_pct: float | None = None  # the raw metric's percent change against the baseline, + = better
    observed: dict[str, float] = field(default_factory=dict)  # the spec's other metrics (constraints, reported)
    feasible: bool | None = None  # every constraint held (None: the spec has none, or the run failed)
    metrics: dict[str, float] = field(default_factory=dict)   # the agent's whole-run summary
    features: dict[str, float] = field(default_factory=dict)  # controller/learn/features.py, vs the baseline
    samples: int = 0              # metric samples the agent streamed during the benchmark
    duration_s: float = 0.0
    error: str | None = None
    label: str = ""               # verify: "A" (original) or "B" (candidate)
    time: float = field(default_factory=time.time)
    aggregates: dict[str, float] = field(default_factory=dict, repr=False)  # absolute; not recorded

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        out = asdict(self)
        del out["aggregates"]
        return out


def log_ratio(raw: float, baseline: float, goal: str) -> float:
    """ln(raw / baseline), negated for a minimized metric: > 0 is better. +-inf for a zero."""
    if raw <= 0:
        r = -math.inf
    else:
        r = math.log(raw) - math.log(baseline)
    return -r if goal == "minimize" else r


def soft_bound(x: float) -> float:
    """Identity inside +-SOFT_BOUND, then a tanh that approaches +-2 x SOFT_BOUND: strictly
    increasing, so it never ties two different measurements, and bounded."""
    if abs(x) <= SOFT_BOUND:
        return x
    return math.copysign(SOFT_BOUND * (1.0 + math.tanh((abs(x) - SOFT_BOUND) / SOFT_BOUND)), x)


def relative_reward(raw: float, baseline: float, goal: str) -> float:
    """The reward of one measurement against the host's baseline (0 when there is no baseline)."""
    if baseline <= 0:
        return 0.0
    return soft_bound(log_ratio(raw, baseline, goal))


# A run that breaks a constraint scores below the original (reward 0) by at least this much, and lower
# the further it is past the limit; it stays above a failed run.
CONSTRAINT_PENALTY = 1.0


def penalized(reward: float, trial: Trial, constraints) -> float:
    """The reward a search sees for a run that breaks a constraint: below the original's, however
    good its objective, and lower the further past the limit (so PPO and random search have a
    direction back); above FAILURE_REWARD. Bo sees the constraints themselves (controller/learn/bo.py)."""
    excess = sum(c.excess(trial.observed[c.metric]) for c in constraints if c.metric in trial.observed)
    if excess <= 0:
        return reward
    return max(FAILURE_REWARD / 2, min(reward, 0.0) - CONSTRAINT_PENALTY - 2.0 * excess)


class Recorder:
    """Numbers evaluations, appends them to trials.jsonl, counts the budget, tells the live view."""

    def __init__(self, append: Callable[[dict], None] | None = None,
                 listeners: list[Callable[[Trial], None]] | None = None):
        self._append = append
        self._listeners = list(listeners or [])
        self._lock = threading.Lock()
        self.trials: list[Trial] = []
        self._search: list[Trial] = []                    # the search phase's trials, kept as they come:
        self._search_by_host: dict[str, list[Trial]] = {}  # every evaluation asks for them

    def record(self, trial: Trial) -> Trial:
        with self._lock:
            self._add(trial)
            if self._append is not None:
                self._append(trial.to_dict())
        for fn in self._listeners:
            fn(trial)
        return trial

    def replay(self, trial: Trial) -> Trial:
        """Take back a trial that trials.jsonl holds already (a resumed run): numbered and counted
        toward the budget like a new one, but neither written again nor shown as new."""
        with self._lock:
            self._add(trial)
        return trial

    def _add(self, trial: Trial) -> None:
        trial.index = len(self.trials)
        if trial.phase == "search":
            self._search.append(trial)
            self._search_by_host.setdefault(trial.host, []).append(trial)
        self.trials.append(trial)

    @property
    def search_evaluations(self) -> int:
        """Evaluations counted against the budget."""
        return len(self._search)

    def search_trials(self, host: str | None = None) -> list[Trial]:
        """The search phase's trials (of one host), in order (a copy; a filter over every trial,
        asked once per evaluation, made a long run quadratic)."""
        return list(self._search if host is None else self._search_by_host.get(host, ()))


class Measure:
    """The host side of an evaluation: apply the values, run the benchmark with the agent's streamed
    samples, parse the reward metric, aggregate the metrics. Built once from the spec, it is a plain
    function of (host, values) that returns plain data (the trial's measured fields), so it runs
    the same in a thread of this process or next to the host's session in a Ray actor, which
    receives it once and then runs a whole evaluation per call (controller/fleet/ray_hosts.py).
    Never raises for a failed apply or benchmark: the returned `error` says so, and `lost` says
    the agent is gone."""

    def __init__(self, spec: TuningSpec, before: list[dict] | None = None):
        """``before``: the steps before every measured run (controller/lifecycle.py)."""
        self.spec = spec
        self.command = spec.benchmark_command  # a paired benchmark's has its partner's address filled in
        self.bounds = {k.param: k.bounds() for k in spec.action_space}  # the agent re-checks these
        self.before = list(before or [])
        self.run_timeout = float(spec.benchmark_timeout)
        steps = sum(float(s["timeout"]) for s in self.before)
        # the request's own bound (steps + run + 30 s), with a margin: what a caller waits at most
        self.timeout = steps + self.run_timeout + 60.0

    def __call__(self, host, values: dict[str, str] | None, bounded: bool | dict = True) -> dict:
        """``bounded``: True checks the spec's ranges, False none (a host's own originals), a dict
        those bounds (an expert profile's values against the catalog's safe bounds)."""
        out = {"metrics": {}, "aggregates": {}, "samples": 0, "raw": None, "error": None, "lost": None,
               "observed": {}, "drift": None}
        started = time.monotonic()
        try:
            self._benchmark(host, out, self._staged(values, bounded) if values else None)
        except AgentGone as e:
            out["lost"] = e.message
            out["error"] = f"agent lost: {e.message}"
        except AgentError as e:
            if e.etype == DRIFT:  # someone else changed a tuned knob: the figure is not of tunefleet's values
                out["drift"] = e.details.get("drift") or {}
                out["error"] = f"drift: {e.message}"
            else:
                out["error"] = e.message
        except TunefleetError as e:
            out["error"] = e.message
        out["duration_s"] = round(time.monotonic() - started, 4)
        return out

    def _staged(self, values: dict[str, str], bounded: bool | dict) -> dict:
        """The `apply` that the agent does before the benchmark, in the same request."""
        if isinstance(bounded, dict):
            bounds = {k: b for k, b in bounded.items() if k in values}
        else:
            bounds = {k: self.bounds[k] for k in values if k in self.bounds} if bounded else {}
        return {"values": values, "bounds": bounds}

    def _benchmark(self, host, out: dict, staged: dict | None) -> None:
        timeout = self.run_timeout
        args: dict[str, Any] = {"cmd": self.command, "timeout": timeout, "interval": 1.0}
        if getattr(self.spec, "benchmark_cwd", None):
            args["cwd"] = self.spec.benchmark_cwd
        if staged:
            args["apply"] = staged
        if self.before:
            args["before"] = self.before
        samples: list[dict[str, float]] = []

        def on_event(msg: dict) -> None:  # the agent's per-second samples while the benchmark runs
            data = msg.get("data") or {}
            if msg.get("event") == "sample" and isinstance(data.get("metrics"), dict):
                samples.append(data["metrics"])

        result = host.request("run", args, timeout=self.timeout - 30.0, on_event=on_event)
        refused = (result.get("apply") or {}).get("refused") or {}
        if refused:  # nothing was run
            assert staged is not None  # only what was staged can be refused
            values = staged["values"]
            why = "; ".join(f"{k} = {values.get(k)!r}: {v.get('message', v)}" for k, v in refused.items())
            raise AgentError(f"apply refused: {why}", host.name, "ValidationError")
        if result.get("before_failed"):  # the benchmark did not run
            raise AgentError(result["before_failed"].get("message") or "a step before the benchmark failed",
                             host.name, "OSError")
        out["metrics"] = metrics = {k: round(float(v), 4) for k, v in (result.get("metrics") or {}).items()}
        out["aggregates"] = feat.aggregate(samples, metrics)
        out["samples"] = len(samples)
        if result.get("timed_out"):
            raise AgentError(f"benchmark timed out after {timeout:g} s", host.name, "Timeout")
        if result.get("exit_code") != 0:
            tail = (result.get("stderr_tail") or result.get("stdout_tail") or "").strip().splitlines()
            raise AgentError(f"benchmark exited {result.get('exit_code')}: {tail[-1] if tail else 'no output'}",
                             host.name, "OSError")
        stdout = result.get("stdout_tail") or ""
        try:
            out["raw"] = float(self.spec.parse_reward(stdout))
            for name in getattr(self.spec, "constraints", ()):  # a bounded metric must be there
                out["observed"][name.metric] = float(self.spec.parse_metric(name.metric, stdout))
        except SpecError as e:
            raise AgentError(str(e.message), host.name, "ValidationError") from None
        for name in getattr(self.spec, "report_metrics", ()):  # a reported one may be missing
            try:
                out["observed"].setdefault(name, float(self.spec.parse_metric(name, stdout)))
            except SpecError:
                pass


class HostEvaluator:
    """Evaluates knob values on one host: the driver side (reward, features against the baseline,
    numbering and recording) around one Measure of the host side. Never raises for a failed
    benchmark: the trial says so."""

    def __init__(self, host: Host, spec: TuningSpec, recorder: Recorder, measure: Measure | None = None, cancel=None):
        """``cancel``: a threading.Event; once it is set, evaluate() raises Cancelled instead of
        starting an evaluation (the ones in flight finish)."""
        self.cancel = cancel
        self.host = host
        self.name = host.name
        self.spec = spec
        self.recorder = recorder
        self.measure = measure or Measure(spec)
        self.baseline: float | None = None
        self.drift_said = False  # the drift was said (search.say_drift)
        self.baseline_aggregates: dict[str, float] = {}  # the reference for every trial's features
        self.lost: str | None = None  # set when the agent is gone: no further evaluation is possible
        self.dropped: str | None = None  # set when the run gave up on this host (why)
        self.rejoined: str | None = None  # set when it came back after its agent was lost (how)
        # knobs someone else changed ({name: {"expected", "found", "since", "detected"}})
        self.drift: dict | None = None
        self.released: dict | None = None  # what its agent restored when the run let go of the host

    def evaluate(self, values: dict[str, str] | None, phase: str = "search", label: str = "",
                 original: bool = False, bounds: dict | None = None) -> Trial:
        """Apply values (None: leave the host as it is), run the benchmark, record the trial.

        `original`: the values are the host's own originals, which may lie outside the spec's
        ranges; the agent then checks names and existence but not the spec's bounds. `bounds`:
        check these instead of the spec's (a compared arm's values, controller/learn/arms.py).
        """
        self._check_cancel()
        if hasattr(self.host, "submit"):
            return self.submit(None, values, phase, label, original, bounds).result()
        checked = bounds if bounds is not None else not original
        return self._finish(values, phase, label, lambda: self.measure(self.host, values, checked))

    def submit(self, executor: Executor | None, values: dict[str, str] | None, phase: str = "search",
               label: str = "", original: bool = False, bounds: dict | None = None):
        """evaluate() as a future of its Trial, for a round of hosts awaited together (gather).
        A host whose session lives elsewhere (a Ray actor: it has `submit`) runs the whole Measure
        there in one call and the driver holds no thread for it; any other host is evaluated in
        one of the executor's threads."""
        self._check_cancel()
        remote = getattr(self.host, "submit", None)
        if remote is None:
            assert executor is not None  # a host without a submit of its own runs in the executor's threads
            return executor.submit(self.evaluate, values, phase, label, original, bounds)
        call = remote(self.measure, values, bounds if bounds is not None else not original,
                      timeout=self.measure.timeout)
        return Then(call, lambda result: self._finish(values, phase, label, result))

    def stop_for_drift(self, drift: dict) -> None:
        """Someone else changed a knob under this host's evaluations: stop tuning it at once. The
        evaluation that saw it is discarded (it fails), the host takes no further part, and its
        agent restores what is still tunefleet's, leaving the other writer's value in place."""
        self.drift = drift
        self.dropped = "someone else changed " + "; ".join(
            f"{k} to {d.get('found')} (tunefleet had {d.get('expected')}) between {_clock(d.get('since'))} and "
            f"{_clock(d.get('detected'))}" for k, d in sorted(drift.items())) + ": stopped tuning this host"
        try:
            self.released = self.host.close() or {}
        except TunefleetError as e:
            self.released = {"error": e.message}

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the run was cancelled", self.name)

    def _finish(self, values: dict[str, str] | None, phase: str, label: str, measured: Callable[[], dict]) -> Trial:
        """The trial from the host side's fields (`measured()` returns them or raises why there are none)."""
        try:
            out = measured()
        except AgentGone as e:
            out = {"error": f"agent lost: {e.message}", "lost": e.message}
        except TunefleetError as e:
            out = {"error": e.message}
        lost = out.pop("lost", None)
        if lost:
            self.lost = lost
        drift = out.pop("drift", None)
        if drift is not None and self.drift is None:
            self.stop_for_drift(drift)
        trial = Trial(self.name, phase, dict(values or {}), label=label, **out)
        if self.baseline_aggregates and phase != "baseline":
            trial.features = feat.relative(trial.aggregates, self.baseline_aggregates)
        constraints = getattr(self.spec, "constraints", ())
        if trial.ok and constraints:
            trial.feasible = all(c.holds(trial.observed[c.metric]) for c in constraints)
        if trial.ok and trial.raw is not None and self.baseline is not None and phase != "baseline":
            trial.reward = penalized(relative_reward(trial.raw, self.baseline, self.spec.goal), trial, constraints)
            pct = change_pct(trial.raw, self.baseline, self.spec.goal)
            trial.change_pct = None if pct is None else round(pct, 3)
        elif not trial.ok and phase == "search":
            trial.reward = FAILURE_REWARD
        return self.recorder.record(trial)


def _clock(t) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "the start"
