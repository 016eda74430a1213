"""The arms of the verification: the original, the run's winner, and the expert profiles it is
compared with (``--compare tuned:network-throughput``), all measured alike on every host.

An administrator's alternative to tuning is to apply a TuneD profile or what a server's
documentation recommends (controller/profiles). A profile arm applies the part of the profile
that these hosts can take: its sysctls that exist and are writable on every host, that the
catalog knows within its safe bounds, and that the hosts do not share through one kernel (a
kernel-wide knob on namespaces of one machine cannot take a value per host). What it leaves out,
and why, goes into the result; its other settings (CPU governor, transparent huge pages, disk
readahead) are not sysctls and are never applied, which the report says too.

Every arm sets every knob any arm touches (the original's values for the rest), so a difference
between arms is the difference between their settings alone. Per host the arms run in rotated
blocks (two arms: A B B A ..., controller/learn/stats.interleaved_schedule), half of the hosts
starting from the other end, so a drift over the verification favours none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller import profiles
from controller.catalog import Catalog
from controller.fleet.executor import gather
from controller.fleet.facts import shared_kernels
from controller.learn import stats
from controller.learn.evaluation import HostEvaluator, Trial
from node_agent.denylist import refusal as denied
from node_agent.sysctl import COUPLED

if TYPE_CHECKING:
    from controller.spec import TuningSpec

ORIGINAL, BEST = "original", "best"
LABELS = {ORIGINAL: "A", BEST: "B"}  # trials.jsonl's labels; a profile arm is labelled with its name


@dataclass
class Arm:
    name: str
    values: dict[str, dict[str, str]] = field(default_factory=dict)   # host -> every knob of the comparison
    own: dict[str, dict[str, str]] = field(default_factory=dict)      # host -> what this arm itself sets
    bounds: dict[str, Any] | None = None  # checked by the agent: None = the spec's ranges, {} = none
    left_out: dict[str, str] = field(default_factory=dict)            # knob -> why the arm does not set it
    source: str = ""
    not_sysctl: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)


def safe_bounds(catalog: Catalog, name: str) -> dict[str, Any]:
    """The catalog's safe bounds of a knob as the agent checks them (docs/protocol.md, apply)."""
    t = catalog.get(name)
    assert t is not None, f"{name} is not in the catalog"  # callers pass the catalog's knobs only
    if t.kind == "choice":
        return {"choices": list(t.choices)}
    if t.kind == "int":
        return {"min": t.min[0], "max": t.max[0]}
    return {"min": list(t.min), "max": list(t.max)}


def plan_profile(name: str, facts: dict[str, dict], catalog: Catalog) -> Arm:
    """Which of a profile's sysctls these hosts can take (``own`` is filled per host later, from
    the originals, since a TuneD floor such as somaxconn ``>2048`` writes only where it raises)."""
    profile = profiles.get(name)
    bounds: dict[str, Any] = {}
    arm = Arm(name, source=profile.source, bounds=bounds, not_sysctl=dict(profile.not_sysctl))
    shared = shared_kernels(facts)
    for knob, value in profile.values.items():
        why = _why_not(knob, value, profile, facts, catalog, shared)
        if why:
            arm.left_out[knob] = why
        else:
            bounds[knob] = safe_bounds(catalog, knob)
    return arm


def _why_not(knob: str, value: str, profile, facts: dict, catalog: Catalog, shared: dict) -> str | None:
    if denied(knob):
        return denied(knob)
    tunable = catalog.get(knob)
    if tunable is None:
        return "not a tunable tunefleet knows"
    partner = {"vm.dirty_ratio": "vm.dirty_bytes", "vm.dirty_background_ratio": "vm.dirty_background_bytes"}
    if value == "0" and partner.get(knob) in profile.values:
        return f"0 means 'use {partner[knob]}', which the profile sets and the kernel then zeroes this for"
    problems = [p for p in profile.catalog_problems(catalog) if p.startswith(knob + ":")]
    if problems:
        return problems[0].split(": ", 1)[1]
    states = {h: ((f or {}).get("knobs") or {}).get(knob) or {} for h, f in facts.items()}
    missing = sorted(h for h, s in states.items() if not s.get("exists"))
    if missing:
        return f"missing on {', '.join(missing)}" + (f" ({tunable.note})" if tunable.note else "")
    readonly = sorted(h for h, s in states.items() if not s.get("writable"))
    if readonly:
        return f"not writable on {', '.join(readonly)}" + (f" ({tunable.note})" if tunable.note else "")
    if tunable.scope == "kernel" and shared:
        groups = "; ".join(", ".join(g) for g in shared.values())
        return f"kernel-wide, and {groups} share one kernel: it cannot take a value per host"
    return None


def complete(arms: list[Arm], spec_knobs: list[str], originals: dict[str, dict[str, str]],
             best: dict[str, str]) -> None:
    """Fill every arm's values per host: what it sets itself, the original's value for every other
    knob the comparison touches."""
    from controller import profiles

    touched = list(dict.fromkeys(list(spec_knobs) + knobs_of(arms)))
    for arm in arms:
        for host, orig in originals.items():
            if arm.name == ORIGINAL:
                own = {}
            elif arm.name == BEST:
                own = dict(best)
            else:
                own = {k: v for k, v in profiles.get(arm.name).to_apply(orig).items() if k in (arm.bounds or {})}
            arm.own[host] = own
            values = {k: own[k] if k in own else orig[k] for k in touched if k in own or k in orig}
            arm.values[host] = _coupled(values, own)


def _coupled(values: dict[str, str], own: dict[str, str]) -> dict[str, str]:
    """A coupled pair (vm.dirty_bytes and vm.dirty_ratio: writing one zeroes the other) is set through
    the one in force: the arm's own when it sets one (the other would undo it), else the one whose
    value is not 0 (the kernel refuses 0 for a bytes knob, and zeroes it itself)."""
    out = dict(values)
    for knob, partner in COUPLED.items():
        if knob not in out or partner not in out:
            continue
        if partner in own and knob not in own:
            del out[knob]
        elif knob not in own and out[knob] == "0" and out[partner] != "0":
            del out[knob]
    return out


def knobs_of(arms: list[Arm]) -> list[str]:
    """The knobs profile arms may set, with the partners of coupled ones (their originals are read
    with the spec's: the partner in force is how the other arms put a coupled pair back)."""
    own = [k for a in arms for k in (a.bounds or {})]
    return list(dict.fromkeys(own + [COUPLED[k] for k in own if k in COUPLED]))


def schedule(labels: list[str], repeats: int, flip: bool) -> list[str]:
    """Each label ``repeats`` times, in rotated blocks (two labels: ABBA pairs, as
    stats.interleaved_schedule); ``flip`` starts from the other end (half of the hosts do)."""
    if len(labels) == 2:
        first, other = (labels[1], labels[0]) if flip else (labels[0], labels[1])
        return [first if x == "A" else other for x in stats.interleaved_schedule(repeats, first="A")]
    order = list(reversed(labels)) if flip else list(labels)
    out = []
    for block in range(repeats):
        rotated = order[block % len(order):] + order[:block % len(order)]
        out += rotated if block % 2 == 0 else list(reversed(rotated))
    return out


def verify(ctx, arms: list[Arm], repeats: int) -> dict[str, dict[str, list[Trial]]]:
    """Every arm ``repeats`` times on every live host, interleaved: host -> arm name -> its trials."""
    by_label = {a.label: a for a in arms}

    def one(ev: HostEvaluator, flip: bool) -> dict[str, list[Trial]]:
        out: dict[str, list[Trial]] = {a.name: [] for a in arms}
        order = schedule([a.label for a in arms], repeats, flip)
        while order and not ev.dropped:
            arm = by_label[order[0]]
            t = ev.evaluate(arm.values[ev.name], phase="verify", label=arm.label, original=arm.name == ORIGINAL,
                            bounds=arm.bounds if arm.name not in (ORIGINAL, BEST) else None)
            if ev.lost or ev.drift is not None:
                # An interleaved comparison with a pause in it would mix samples taken far apart: a
                # host that comes back is verified again whole (as a resumed run does).
                if ctx.bring_back(ev):
                    out, order = {a.name: [] for a in arms}, schedule([a.label for a in arms], repeats, flip)
                    continue
                break
            out[arm.name].append(t)
            order = order[1:]
        return out

    live = [ev for ev in ctx.live() if all(ev.name in a.values for a in arms)]
    futures = [ctx.executor.submit(one, ev, i % 2 == 1) for i, ev in enumerate(live)]
    return {ev.name: r for ev, r in zip(live, gather(futures))}


def _raws(trials: list[Trial]) -> list[float]:
    return [t.raw for t in trials if t.ok and t.raw is not None]


def _pairs(samples: dict, a: str, b: str) -> dict[str, tuple[list[float], list[float]]]:
    """host -> (arm a's raws, arm b's raws), for the hosts where both measured something."""
    out = {}
    for host, arms in samples.items():
        ra, rb = _raws(arms.get(a, [])), _raws(arms.get(b, []))
        if ra and rb:
            out[host] = (ra, rb)
    return out


def bound(constraint, per_host: dict[str, list[float]], seed: int) -> dict:
    """A constraint against one arm's measurements: pooled median and its 95% interval; ``holds``
    is True when the whole interval is within the limit, False when the median is past it, None
    when the interval straddles it (not shown either way)."""
    median, low, high = stats.median_interval(per_host, seed=seed)
    if constraint.max is not None:
        holds = True if high <= constraint.max else False if median > constraint.max else None
    else:
        holds = True if low >= constraint.min else False if median < constraint.min else None
    return {"median": median, "ci_low": low, "ci_high": high, "holds": holds, "n": sum(map(len, per_host.values()))}


def _observed(samples: dict, arm: str, metric: str) -> dict[str, list[float]]:
    out = {}
    for host, arms in samples.items():
        values = [t.observed[metric] for t in arms.get(arm, []) if t.ok and metric in t.observed]
        if values:
            out[host] = values
    return out


def summarize(samples: dict[str, dict[str, list[Trial]]], arms: list[Arm], spec: TuningSpec, seed: int) -> dict:
    """The verification's verdicts: the winner against the original (``verification``, per host and
    for the fleet), every profile arm against the original and the winner against it (``arms``), and
    every constraint on every arm (``constraints``)."""
    goal = spec.goal
    pairs = _pairs(samples, ORIGINAL, BEST)
    out: dict[str, Any] = {
        "verification": stats.fleet_change(pairs, goal=goal, seed=seed).to_dict() if pairs else None,
        "per_host": {h: stats.relative_change(a, b, goal=goal, seed=seed).to_dict() for h, (a, b) in pairs.items()},
        "arms": {}, "constraints": []}
    for arm in arms:
        if arm.name in (ORIGINAL, BEST):
            continue
        vs_original, vs_best = _pairs(samples, ORIGINAL, arm.name), _pairs(samples, arm.name, BEST)
        own = {h: v for h, v in arm.own.items() if h in samples}
        common = next(iter(own.values())) if own and all(v == next(iter(own.values())) for v in own.values()) else None
        out["arms"][arm.name] = {
            "source": arm.source, "values": common if common is not None else own, "left_out": arm.left_out,
            "not_sysctl": arm.not_sysctl,
            "verification": stats.fleet_change(vs_original, goal=goal, seed=seed).to_dict() if vs_original else None,
            # the winner against this arm: positive = the winner is better
            "best_vs": stats.fleet_change(vs_best, goal=goal, seed=seed).to_dict() if vs_best else None}
    for c in spec.constraints:
        entry: dict[str, Any] = {"metric": c.metric, **({"max": c.max} if c.max is not None else {"min": c.min}),
                                 "arms": {}}
        for arm in arms:
            per_host = _observed(samples, arm.name, c.metric)
            if per_host:
                entry["arms"][arm.name] = bound(c, per_host, seed)
        out["constraints"].append(entry)
    out["observed"] = {arm.name: {m: stats.median_interval(v, seed=seed)[0]
                                  for m in spec.observed_metrics if (v := _observed(samples, arm.name, m))}
                       for arm in arms}
    return out
