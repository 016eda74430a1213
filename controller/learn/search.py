"""What every search strategy gets: the hosts' evaluators, the budget, the executor, a seed.

A strategy is a function `search(ctx)`; it spends at most `ctx.budget` benchmark evaluations
(counted across the fleet) through `ctx.evaluate_round` or a FleetVecEnv built from
`ctx.make_envs()`. Strategies register themselves by name (controller/learn/strategies.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from controller import training
from controller.errors import TunefleetError
from controller.fleet.executor import Executor, gather
from controller.learn.evaluation import HostEvaluator, Recorder, Trial
from controller.learn.strategies import STRATEGIES, register

if TYPE_CHECKING:
    from controller.fleet.rejoin import Rejoiner
    from controller.spec import TuningSpec

# A host whose evaluations keep failing this many times in a row is dropped from the run.
DROP_AFTER_FAILURES = 6


@dataclass
class SearchContext:
    spec: TuningSpec
    evaluators: dict[str, HostEvaluator]
    originals: dict[str, dict[str, str]]
    baseline_metrics: dict[str, dict[str, float]]
    executor: Executor
    recorder: Recorder
    budget: int
    seed: int = 0
    checkpoint_dir: Path | None = None
    episode_steps: int = 4
    log: Callable[[str], None] = print
    training: dict | None = None        # the spec's training_config, validated (controller/training.py)
    policy_in: Path | None = None       # a saved PPO policy to start from (None: cold start)
    policy_out: Path | None = None      # where PPO saves the policy it trained
    episodes: int | None = None         # set by strategies that run episodes (PPO): how many began
    tensorboard_dir: Path | None = None  # --tensorboard: PPO's training curves go here (stable-baselines3's logger)
    rejoiner: Rejoiner | None = None    # reconnects hosts whose agent was lost (controller/fleet/rejoin.py)
    prepare: Callable | None = None     # prepares a rejoining host's workload (controller/lifecycle.py)

    @property
    def dropped(self) -> dict[str, str]:
        return {n: ev.dropped for n, ev in self.evaluators.items() if ev.dropped}

    @property
    def remaining(self) -> int:
        return max(0, self.budget - self.recorder.search_evaluations)

    def live(self) -> list[HostEvaluator]:
        """The hosts the run still evaluates on; one whose reconnection has settled since the last
        call comes back here, or stays out for good. When every host is out and one is being
        reconnected, its verdict is awaited: nothing else could run meanwhile."""
        if self.rejoiner is not None:
            self.take_back(self.rejoiner.poll())
            if all(ev.dropped for ev in self.evaluators.values()):
                self.take_back(self.rejoiner.poll(wait=True))
        return [ev for ev in self.evaluators.values() if not ev.dropped]

    def take_back(self, verdicts: dict) -> None:
        """Apply reconnection verdicts (rejoin.Rejoin by host): back on its originals, a host is
        evaluated again on its new session; anywhere else it stays dropped, saying why."""
        for name, verdict in verdicts.items():
            settle(self.evaluators[name], verdict, self.log, self.prepare)

    def bring_back(self, ev: HostEvaluator) -> bool:
        """In a phase that measures each host on its own schedule (baseline, confirm, verify): wait
        for a lost host's reconnection in its own thread (the others go on) and say whether it is back."""
        return bring_back(self.rejoiner, ev, self.log, self.prepare)

    def evaluate_round(self, candidates: dict[str, dict[str, str]]) -> dict[str, Trial]:
        """Evaluate one candidate per host, all hosts at once; never beyond the budget."""
        names = [n for n in candidates if n not in self.dropped][: self.remaining]
        futures = [self.evaluators[n].submit(self.executor, candidates[n]) for n in names]
        trials = dict(zip(names, gather(futures)))
        for name in names:
            self.note_outcome(name)
        if not self.live():
            raise TunefleetError("every host failed: " + "; ".join(f"{n}: {why}" for n, why in self.dropped.items()))
        return trials

    def note_outcome(self, name: str) -> None:
        """Drop a host that lost its agent or keeps failing; say so once, clearly."""
        ev = self.evaluators[name]
        say_drift(ev, self.log)
        if ev.dropped:
            return
        recent = self.recorder.search_trials(name)[-DROP_AFTER_FAILURES:]
        if ev.lost and self.rejoiner is not None and self.rejoiner.start(name, ev.lost):
            ev.dropped = f"{ev.lost}; reconnecting"  # out of the rounds until live() takes the verdict
            self.log(f"{name}: {ev.lost}; reconnecting in the background")
            return
        if ev.lost:
            why = ev.lost
        elif len(recent) == DROP_AFTER_FAILURES and not any(t.ok for t in recent):
            why = f"{DROP_AFTER_FAILURES} evaluations in a row failed (last: {recent[-1].error})"
        else:
            return
        ev.dropped = why
        self.log(f"dropping {name} from the run: {why}")


def settle(ev: HostEvaluator, verdict, log: Callable[[str], None], prepare: Callable | None = None) -> None:
    """One reconnection verdict (rejoin.Rejoin): back in on its new session, or out for good. A host
    back in gets its workload prepared again (``prepare``: its service died with the old session,
    or with the host)."""
    if verdict.host is not None and prepare is not None:
        try:
            prepare(verdict.host)
        except TunefleetError as e:
            verdict.host, verdict.note = None, f"{verdict.note}; but its workload could not be prepared: {e}"
    if verdict.host is None:
        ev.dropped = verdict.note
        log(f"dropping {ev.name} from the run: {verdict.note}")
    else:
        ev.host, ev.lost, ev.dropped, ev.rejoined = verdict.host, None, None, verdict.note
        log(f"{ev.name} is back in the run: {verdict.note}")


def bring_back(rejoiner, ev: HostEvaluator, log: Callable[[str], None], prepare: Callable | None = None) -> bool:
    """Reconnect a host whose agent was lost and wait for the verdict (within the rejoin window):
    True when it is back on the run's originals and may go on measuring."""
    say_drift(ev, log)
    if not ev.lost or ev.drift is not None:
        return False
    if rejoiner is None or not rejoiner.start(ev.name, ev.lost):  # reconnected once already: out
        ev.dropped = ev.dropped or ev.lost
        log(f"dropping {ev.name} from the run: {ev.lost}")
        return False
    ev.dropped = f"{ev.lost}; reconnecting"
    log(f"{ev.name}: {ev.lost}; reconnecting")
    verdict = rejoiner.wait_for(ev.name)
    if verdict is not None:
        settle(ev, verdict, log, prepare)
    return not ev.dropped and ev.lost is None


def say_drift(ev: HostEvaluator, log: Callable[[str], None]) -> None:
    """Say once that a host stopped because someone else changed a knob it was tuning."""
    if ev.drift is not None and not getattr(ev, "drift_said", False):
        ev.drift_said = True
        log(f"{ev.name}: {ev.dropped}")


def evaluate_priors(ctx: SearchContext) -> None:
    """The spec's initial candidates (expert priors, controller/priors.py) before anything a
    strategy proposes: one per live host per round, counted in the budget. Every strategy starts
    with this, so none ends worse than the expert's guess."""
    queue = [c["values"] for c in getattr(ctx.spec, "initial_candidates", None) or []]
    queue = queue[len(ctx.recorder.search_trials()):]  # a resumed run evaluated these already (they come first)
    while queue and ctx.remaining > 0:
        hosts = [ev.name for ev in ctx.live()]
        ctx.evaluate_round(dict(zip(hosts, queue)))
        queue = queue[len(hosts):]


@register("random")
def random_search(ctx: SearchContext) -> None:
    """Uniform samples of the action box, one per host per round: the baseline every smarter
    strategy must beat at equal budget."""
    evaluate_priors(ctx)
    rng = np.random.default_rng(ctx.seed)
    # A resumed run (controller/resume.py) has its recorded evaluations in the recorder: draw past
    # the candidates they used, so it proposes what the run would have without the interruption.
    priors = len(getattr(ctx.spec, "initial_candidates", None) or [])
    rng.uniform(-1.0, 1.0, size=(max(0, len(ctx.recorder.search_trials()) - priors), ctx.spec.action_dim))
    while ctx.remaining > 0:
        candidates = {}
        for ev in ctx.live():
            action = rng.uniform(-1.0, 1.0, size=ctx.spec.action_dim)
            candidates[ev.name] = ctx.spec.to_values(action)
        ctx.evaluate_round(candidates)


# --strategy auto starts PPO from a stored policy only when this many evaluations trained it (its
# run and the runs it started from): on the simulated family, a policy behind 768 evaluations beat
# bo at budgets 6 to 24 and tied at 48, those behind 48 or 192 lost to it at 48 (docs/strategies.md).
AUTO_MIN_TRAINED = 500


def trained_evaluations(store, entry) -> int:
    """Evaluations behind a stored policy: its own run's and those of the runs it started from."""
    by_file = {e.file: e for e in store.entries()}
    total, seen = 0, set()
    while entry is not None and entry.file not in seen:
        seen.add(entry.file)
        total += int(entry.data.get("evaluations") or 0)
        parent = entry.data.get("started_from")
        entry = by_file.get(Path(parent).name) if parent else None
    return total


def auto_choice(spec: TuningSpec, kernel: str, policy: str | None, store) -> tuple[str, str]:
    """What ``--strategy auto`` runs, and why: PPO from a well-trained policy when there is one (the
    given --policy PATH, or the store's policy for this knob set with AUTO_MIN_TRAINED evaluations
    behind it), Bayesian optimization otherwise: a cold PPO never beat bo on the simulated family."""
    if policy == "none":
        return "bo", "--policy none: no trained policy, so bo"
    if policy:
        return "ppo", f"ppo from the policy {policy}"
    entry = store.find(spec, kernel, training.action_mode(spec.training_config))
    if entry is None:
        return "bo", "no trained policy for this knob set in the policy store, so bo"
    trained = trained_evaluations(store, entry)
    if trained < AUTO_MIN_TRAINED:
        return "bo", (f"the stored policy {entry.describe()} has {trained} evaluations behind it "
                      f"(ppo from a stored policy needs {AUTO_MIN_TRAINED}), so bo")
    return "ppo", f"ppo from the stored policy {entry.describe()}, {trained} evaluations behind it"


@register("auto")
def _auto(ctx: SearchContext) -> None:
    """A context with a policy to start from runs PPO, any other bo (tune() decides by auto_choice)."""
    STRATEGIES["ppo" if ctx.policy_in is not None else "bo"](ctx)
