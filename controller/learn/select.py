"""Choosing the best candidate without trusting one noisy sample.

The search's single best reward is the maximum of many noisy measurements, so it is biased
upward (the winner's curse): on a workload no knob affects it still shows a few percent. Before
a configuration is declared best, the top few distinct configurations of the search are measured
again on every live host (phase "confirm"; recorded in trials.jsonl, not counted toward the
search budget) and the one with the best median re-measured raw metric wins (each sample taken
relative to its host's baseline, since hosts differ; a failed re-measurement scores the floor). Only fresh samples
decide: the search samples that put a candidate on the short list would favour the lucky one.
Hosts run the candidates in rotated orders, so a drift over time does not favour one of them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from controller.fleet.executor import gather
from controller.learn.evaluation import FAILURE_REWARD, Trial, log_ratio
from controller.learn.search import SearchContext

MIN_CONFIRM_SAMPLES = 3  # per candidate across the fleet, when repeats are not given


def config_key(values: dict[str, str]) -> tuple:
    """Two trials ran the same configuration when every knob had the same text (spaces normalized)."""
    return tuple(sorted((k, " ".join(str(v).split())) for k, v in values.items()))


@dataclass
class Candidate:
    values: dict[str, str]
    trial: Trial                                  # its best search trial
    search_rewards: list[float] = field(default_factory=list)
    confirm_rewards: list[float] = field(default_factory=list)
    confirm_failures: int = 0
    confirm_feasible: list[bool] = field(default_factory=list)  # per re-measurement, when the spec has constraints

    @property
    def feasible(self) -> bool:
        """Its re-measurements kept the spec's constraints at least half of the time (True without any)."""
        return not self.confirm_feasible or 2 * sum(self.confirm_feasible) >= len(self.confirm_feasible)

    @property
    def search_mean(self) -> float:
        return statistics.fmean(self.search_rewards)

    @property
    def confirm_median(self) -> float | None:
        return statistics.median(self.confirm_rewards) if self.confirm_rewards else None

    def to_dict(self) -> dict:
        med = self.confirm_median
        return {
            "values": self.values,
            "search_rewards": [round(r, 4) for r in self.search_rewards],
            "confirm_rewards": [round(r, 4) for r in self.confirm_rewards],
            "confirm_median": None if med is None else round(med, 4),
            "confirm_failures": self.confirm_failures,
            **({"confirm_feasible": self.confirm_feasible} if self.confirm_feasible else {}),
        }


@dataclass
class Selection:
    chosen: Candidate
    candidates: list[Candidate]
    confirmed: bool          # True when fresh samples decided; False: the search's best, unconfirmed
    repeats: int = 0         # confirm runs per candidate per host

    @property
    def values(self) -> dict[str, str]:
        return self.chosen.values

    @property
    def trial(self) -> Trial:
        return self.chosen.trial

    def to_dict(self) -> dict:
        return {
            "confirmed": self.confirmed,
            "repeats_per_host": self.repeats,
            "chosen": self.candidates.index(self.chosen),
            "candidates": [c.to_dict() for c in self.candidates],
        }


def top_candidates(trials: Sequence[Trial], top_k: int) -> list[Candidate]:
    """The top_k distinct configurations among the successful search trials, by mean search reward
    (best first; ties keep the order in which they were first found)."""
    groups: dict[tuple, Candidate] = {}
    for t in trials:
        if t.phase != "search" or not t.ok or t.reward is None or not math.isfinite(t.reward):
            continue
        key = config_key(t.values)
        c = groups.get(key)
        if c is None:
            groups[key] = Candidate(dict(t.values), t, [t.reward])
        else:
            c.search_rewards.append(t.reward)
            if c.trial.reward is None or t.reward > c.trial.reward:  # a kept trial has its reward
                c.trial = t
    ranked = sorted(groups.values(), key=lambda c: -c.search_mean)  # stable: first found wins ties
    return ranked[: max(1, top_k)]


def choose(candidates: list[Candidate]) -> Candidate:
    """The candidate with the best median confirm reward among those that kept the spec's
    constraints when measured again (all of them when none did); ties and unmeasured ones fall
    back on the search ranking (the list order)."""
    measured = [c for c in candidates if c.confirm_rewards]
    if not measured:
        return candidates[0]
    measured = [c for c in measured if c.feasible] or measured
    return max(measured, key=lambda c: (c.confirm_median, -candidates.index(c)))


def pick_best(ctx: SearchContext, top_k: int = 3, repeats: int | None = None,
              phase: Callable[[str, str], None] | None = None) -> Selection | None:
    """Re-measure the search's top_k configurations on every live host and pick by median reward.

    ``repeats`` is the number of runs of each candidate per host (default: enough for at least
    MIN_CONFIRM_SAMPLES per candidate across the fleet). With top_k < 2, or when the search found
    a single distinct configuration, nothing is re-measured (verification still is). None when
    the search has no successful trial.
    """
    ranked = top_candidates(ctx.recorder.search_trials(), top_k)
    if not ranked:
        return None
    live = ctx.live()
    if top_k < 2 or len(ranked) < 2 or not live:
        return Selection(ranked[0], ranked, confirmed=False)
    repeats = repeats or max(1, math.ceil(MIN_CONFIRM_SAMPLES / len(live)))
    if phase is not None:
        phase("confirm", f"top {len(ranked)} candidates, {repeats} run(s) each per host")

    def measure(ev, offset: int) -> list[tuple[int, Trial]]:
        order = [(offset + j) % len(ranked) for j in range(len(ranked))] * repeats
        out = []
        queue = list(order)
        while queue and not ev.dropped:
            i = queue[0]
            t = ev.evaluate(ranked[i].values, phase="confirm")
            if ev.lost or ev.drift is not None:  # not this configuration's doing: measured again if the host comes back
                if ctx.bring_back(ev):
                    continue
                break
            out.append((i, t))
            queue.pop(0)
        return out

    futures = [ctx.executor.submit(measure, ev, h) for h, ev in enumerate(live)]
    for ev, results in zip(live, gather(futures)):
        ctx.note_outcome(ev.name)
        for i, t in results:
            if t.ok and t.reward is not None and t.raw is not None and ev.baseline is not None:
                # The raw metric against this host's baseline, unbounded: medians of these order the
                # candidates as their raw ratios do (the reward's far-out squash plays no part).
                ranked[i].confirm_rewards.append(log_ratio(t.raw, ev.baseline, ctx.spec.goal))
                if t.feasible is not None:
                    ranked[i].confirm_feasible.append(t.feasible)
            elif not ev.lost:  # the configuration failed, not the host: it scores the floor
                ranked[i].confirm_failures += 1
                ranked[i].confirm_rewards.append(FAILURE_REWARD)
    chosen = choose(ranked)
    return Selection(chosen, ranked, confirmed=bool(chosen.confirm_rewards), repeats=repeats)
