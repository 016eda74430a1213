"""One evaluation path for every strategy: apply knob values on a host, run the benchmark,
parse the reward metric, record the trial. PPO, random and Bayesian search all go through it,
so they are compared on equal terms."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from controller.errors import AgentError, AgentGone, SpecError, TunefleetError
from controller.fleet.fleet import Host

# Rewards are relative to the host's own baseline; clipped so one pathological sample can't
# dominate a policy update. A failed evaluation scores the floor.
REWARD_FLOOR = -1.0
REWARD_CEIL = 5.0
FAILURE_REWARD = REWARD_FLOOR


@dataclass
class Trial:
    host: str
    phase: str                    # baseline | search | verify
    values: dict[str, str]        # the knob values in force during the benchmark
    index: int = -1               # evaluation number across the run (search phase: counts toward the budget)
    raw: float | None = None      # the reward metric as the benchmark printed it
    reward: float | None = None   # relative to the host's baseline; None in the baseline phase
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    label: str = ""               # verify: "A" (original) or "B" (candidate)
    time: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)


def relative_reward(raw: float, baseline: float, goal: str) -> float:
    """perf/baseline - 1 for a maximized metric; 1 - perf/baseline for a minimized one (clipped)."""
    if baseline <= 0:
        return 0.0
    r = raw / baseline - 1.0
    if goal == "minimize":
        r = -r
    return max(REWARD_FLOOR, min(REWARD_CEIL, r))


class Recorder:
    """Numbers evaluations, appends them to trials.jsonl, counts the budget, tells the live view."""

    def __init__(self, append: Callable[[dict], None] | None = None,
                 listeners: list[Callable[[Trial], None]] | None = None):
        self._append = append
        self._listeners = list(listeners or [])
        self._lock = threading.Lock()
        self.trials: list[Trial] = []
        self.search_evaluations = 0

    def record(self, trial: Trial) -> Trial:
        with self._lock:
            trial.index = len(self.trials)
            if trial.phase == "search":
                self.search_evaluations += 1
            self.trials.append(trial)
            if self._append is not None:
                self._append(trial.to_dict())
        for fn in self._listeners:
            fn(trial)
        return trial

    def search_trials(self, host: str | None = None) -> list[Trial]:
        return [t for t in self.trials if t.phase == "search" and (host is None or t.host == host)]


class HostEvaluator:
    """Evaluates knob values on one host. Never raises for a failed benchmark: the trial says so."""

    def __init__(self, host: Host, spec, recorder: Recorder):
        self.host = host
        self.name = host.name
        self.spec = spec
        self.recorder = recorder
        self.bounds = {k.param: k.bounds() for k in spec.action_space}  # the agent re-checks these
        self.baseline: float | None = None
        self.lost: str | None = None  # set when the agent is gone: no further evaluation is possible
        self.dropped: str | None = None  # set when the run gave up on this host (why)

    def evaluate(self, values: dict[str, str] | None, phase: str = "search", label: str = "",
                 original: bool = False) -> Trial:
        """Apply values (None: leave the host as it is), run the benchmark, record the trial.

        `original`: the values are the host's own originals, which may lie outside the spec's
        ranges; the agent then checks names and existence but not the spec's bounds.
        """
        trial = Trial(self.name, phase, dict(values or {}), label=label)
        started = time.monotonic()
        try:
            if values:
                self._apply(values, bounded=not original)
            self._benchmark(trial)
        except AgentGone as e:
            self.lost = e.message
            trial.error = f"agent lost: {e.message}"
        except TunefleetError as e:
            trial.error = e.message
        trial.duration_s = round(time.monotonic() - started, 4)
        if trial.ok and self.baseline is not None and phase != "baseline":
            trial.reward = relative_reward(trial.raw, self.baseline, self.spec.goal)
        elif not trial.ok and phase == "search":
            trial.reward = FAILURE_REWARD
        return self.recorder.record(trial)

    def _apply(self, values: dict[str, str], bounded: bool = True) -> None:
        bounds = {k: self.bounds[k] for k in values if k in self.bounds} if bounded else {}
        result = self.host.request("apply", {"values": values, "bounds": bounds}, timeout=30.0)
        refused = result.get("refused") or {}
        if refused:
            why = "; ".join(f"{k} = {values.get(k)!r}: {v.get('message', v)}" for k, v in refused.items())
            raise AgentError(f"apply refused: {why}", self.name, "ValidationError")

    def _benchmark(self, trial: Trial) -> None:
        timeout = float(self.spec.benchmark_timeout)
        args = {"cmd": self.spec.benchmark_command, "timeout": timeout, "interval": 1.0}
        if getattr(self.spec, "benchmark_cwd", None):
            args["cwd"] = self.spec.benchmark_cwd
        result = self.host.request("run", args, timeout=timeout + 30.0)
        trial.metrics = {k: round(float(v), 4) for k, v in (result.get("metrics") or {}).items()}
        if result.get("timed_out"):
            raise AgentError(f"benchmark timed out after {timeout:g} s", self.name, "Timeout")
        if result.get("exit_code") != 0:
            tail = (result.get("stderr_tail") or result.get("stdout_tail") or "").strip().splitlines()
            raise AgentError(f"benchmark exited {result.get('exit_code')}: {tail[-1] if tail else 'no output'}",
                             self.name, "OSError")
        try:
            trial.raw = float(self.spec.parse_reward(result.get("stdout_tail") or ""))
        except SpecError as e:
            raise AgentError(str(e.message), self.name, "ValidationError")
