"""The built-in strategist: a small catalog of workloads, matched to a goal by its words.

Offline and deterministic. Each workload is a benchmark with a measured signal, the reward it
prints, the knobs worth turning for it with a reason each, and what the hosts need (tools as named
in hello's ``tools``, services as in hello's ``services``). ``plan(goal, facts)`` picks the workload
whose keywords the goal matches best and says which words decided it.

Planners plan within the hosts' facts: on hosts that share one kernel (same boot_id) a kernel-wide
knob cannot take a value per host, so ``leave_out_kernel_wide`` takes such knobs out of the spec
and says which and why, instead of handing on a spec the validation would refuse.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from fnmatch import fnmatch

from controller.catalog import Catalog, offered
from controller.errors import SpecError
from controller.fleet.facts import shared_kernels
from controller.priors import MAX_REASON
from controller.spec import TuningSpec
from controller.strategist.workloads import WORKLOADS, Workload, workloads  # noqa: F401 (the catalog's public names)

SERVICE_HINTS = {"postgresql": "nothing listens on TCP 5432"}


@dataclass
class Plan:
    spec: TuningSpec
    workload: str                     # the workload's key
    reason: str                       # which words matched
    rationale: dict[str, str]         # knob -> why it is in the plan
    warnings: list[str] = field(default_factory=list)
    strategist: str = "builtin"
    notes: list[str] = field(default_factory=list)            # what the planner decided for the user, and why
    left_out: dict[str, str] = field(default_factory=dict)    # knob -> why the facts kept it out of the spec


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("i/o", "io")
    return re.findall(r"[a-z0-9]+", text)


def _word_matches(token: str, word: str) -> bool:
    # short words must match exactly ("io", "db", "ab"); longer ones also match inflections
    return token == word or (len(word) >= 4 and token.startswith(word))


def _matches(tokens: list[str], phrase: str) -> bool:
    words = phrase.split()
    return any(all(_word_matches(tokens[i + j], w) for j, w in enumerate(words))
               for i in range(len(tokens) - len(words) + 1))


def score(goal: str, workload: Workload) -> tuple[int, list[str]]:
    tokens = _tokens(goal)
    matched = [p for p in workload.keywords if _matches(tokens, p)]
    total = sum(workload.keywords[p] for p in matched)
    named = goal.strip().lower() == workload.key or (
        "-" in workload.key and re.search(rf"(?<![\w-]){re.escape(workload.key)}(?![\w-])", goal.lower()))
    if named:  # `tunefleet plan connection-storm`
        total += 10
        if workload.key not in matched:
            matched.insert(0, workload.key)
    return total, matched


def plan(goal: str, facts: dict | None = None, catalog: Catalog | None = None) -> Plan:
    """The best-matching workload for ``goal``; ``facts`` (host -> hello facts) add warnings and
    leave out the knobs those hosts cannot tune in parallel."""
    scored = [(score(goal, w), i, w) for i, w in enumerate(WORKLOADS)]
    best = max(scored, key=lambda s: (s[0][0], -s[1]))
    (points, matched), _, workload = best
    if points <= 0:
        known = "; ".join(f"{w.key} ({w.name})" for w in WORKLOADS)
        raise SpecError(f"no built-in workload matches {goal!r}: known workloads are {known}. Use their words in "
                        "the goal, or write a spec file and pass --spec FILE")
    reason = f"matched {', '.join(repr(m) for m in matched)}"
    others = sorted(((p, -i, w.key) for (p, _), i, w in scored if 0 < p and w is not workload), reverse=True)
    if others:
        reason += "; also matched: " + ", ".join(f"{key} ({p})" for p, _, key in others)
    reason = f"{workload.key} scored {points}: " + reason
    warnings = list(workload.caveats) + _host_warnings(workload, facts or {})
    workload, narrowed = narrow_choices(workload, facts)
    missing = leave_out_missing(workload.spec, facts, catalog)
    shared = leave_out_kernel_wide(without(workload.spec, missing) if missing else workload.spec, facts, catalog)
    if not missing and not shared:
        planned = Plan(workload.spec, workload.key, reason, workload.rationale, warnings, notes=narrowed)
    else:
        planned = _plan_without(workload, missing, shared, reason, warnings, facts, catalog,
                                [key for _, _, key in others])
        planned.notes[:0] = narrowed
    return with_bounds(planned, goal)


# "... but keep p99 latency under 20 ms": a bound on another metric the benchmark prints
_BOUND = re.compile(r"\b(p99|99th percentile|tail|p95|95th percentile|average|mean|avg)?\s*(?:latency|response time)"
                    r"s?\s+(?:\w+\s+){0,2}?(?:under|below|less than|at most|within|no more than|<=|<)\s*"
                    r"([0-9]+(?:\.[0-9]+)?)\s*(ms|milliseconds?|s|seconds?)\b"
                    r"|\b(p99|p95)\s+(?:\w+\s+){0,2}?(?:under|below|less than|at most|within|<=|<)\s*"
                    r"([0-9]+(?:\.[0-9]+)?)\s*(ms|milliseconds?|s|seconds?)\b", re.I)
_BOUND_METRIC = {"p99": "latency_p99_ms", "99th percentile": "latency_p99_ms", "tail": "latency_p99_ms",
                 "p95": "latency_p95_ms", "95th percentile": "latency_p95_ms"}


def bounds_in(goal: str) -> list[tuple[str, float]]:
    """(metric, max in ms) for every latency bound the goal states ("p99 under 20 ms", "keep the
    average latency below 5 ms"); a latency without a percentile is the mean."""
    out = []
    for m in _BOUND.finditer(goal):
        which, number, unit = m.group(1, 2, 3) if m.group(2) else m.group(4, 5, 6)
        metric = _BOUND_METRIC.get((which or "").lower(), "latency_avg_ms")
        value = float(number) * (1000.0 if unit.lower().startswith("s") else 1.0)
        out.append((metric, value))
    return out


def with_bounds(planned: Plan, goal: str) -> Plan:
    """The plan with the goal's latency bounds as constraints, where its benchmark prints the metric;
    a bound it cannot check is said, not dropped silently."""
    found = bounds_in(goal)
    if not found:
        return planned
    spec = planned.spec
    prints = {spec.reward_metric, *spec.report_metrics}
    kept = [(m, v) for m, v in found if m in prints]
    for metric, value in found:
        if (metric, value) not in kept:
            planned.notes.append(f"the goal bounds {metric} at {value:g}, which this workload's benchmark does not "
                                 f"report ({', '.join(sorted(prints))}): no bound set; write a spec whose benchmark "
                                 "prints it")
    if kept:
        data = spec.to_dict()
        data["constraints"] = [{"metric": m, "max": v} for m, v in kept]
        planned.spec = TuningSpec.from_dict(data, f"the plan for {spec.workload_name!r}")
        planned.notes.append("bound from the goal: " + ", ".join(f"{m} <= {v:g}" for m, v in kept)
                             + " (a winner that breaks it is not claimed)")
    return planned


def narrow_choices(workload: Workload, facts: dict | None) -> tuple[Workload, list[str]]:
    """The workload with each choice knob searched only among the values every host offers
    (net.ipv4.tcp_congestion_control: the algorithms it has, and inside a network namespace only
    those its first namespace allows); a prior that picks a value gone from the list is dropped.
    Returns the workload and a note per narrowed knob."""
    from dataclasses import replace

    if not facts:
        return workload, []
    data = copy.deepcopy(workload.spec_data)
    notes, gone = [], {}
    for knob in data["action_space"]:
        if "values" not in knob:
            continue
        offers = [o for o in (offered(knob["param"], f or {}) for f in facts.values()) if o is not None]
        if not offers:
            continue
        kept = [v for v in knob["values"] if all(v in o[0] for o in offers)]
        if kept == knob["values"] or not kept:
            continue
        gone[knob["param"]] = [v for v in knob["values"] if v not in kept]
        notes.append(f"{knob['param']}: {', '.join(gone[knob['param']])} not offered on these hosts ({offers[0][1]}: "
                     f"{' '.join(offers[0][0])}); searched among {', '.join(kept)}")
        knob["values"] = kept
    if not gone:
        return workload, []
    data["initial_candidates"] = [c for c in data.get("initial_candidates", [])
                                  if not any(c["values"].get(k) in v for k, v in gone.items())]
    return replace(workload, spec_data=data), notes


def _plan_without(workload: Workload, missing: dict[str, str], shared: dict[str, str], reason: str,
                  warnings: list[str], facts, catalog, also_matched: list[str]) -> Plan:
    """The workload's plan without the knobs these hosts lack or cannot tune in parallel, or a clear
    refusal when none is left."""
    left_out = {**missing, **shared}
    kept = [n for n in workload.spec.knob_names if n not in left_out]
    if not kept and shared:
        per_namespace = [w.key for w in WORKLOADS if not leave_out_kernel_wide(w.spec, facts, catalog)]
        raise SpecError(f"{workload.key}: every knob it tunes ({', '.join(left_out)}) is kernel-wide or missing, "
                        f"and {_sharing(facts)} share one kernel: nothing is left to tune on them in parallel; "
                        f"tune one host alone (--limit {single_host(facts)}), or choose a workload with "
                        f"per-namespace knobs ({', '.join(per_namespace)})")
    if not kept:
        raise SpecError(f"{workload.key}: every knob it tunes is missing on these hosts: "
                        + "; ".join(f"{n}: {why}" for n, why in missing.items()))
    rationale = {**{n: workload.rationale[n] for n in kept},
                 **{n: f"left out: {why}" for n, why in left_out.items()}}
    notes = [f"left out {n}: {why}" for n, why in missing.items()]
    if shared:
        note = left_out_note(shared, facts)
        per_namespace = [w.key for w in WORKLOADS if not leave_out_kernel_wide(w.spec, facts, catalog)]
        better = [k for k in also_matched if k in per_namespace]
        if better:
            note += f"; {better[0]} also matches the goal and tunes per-namespace knobs only"
        notes.append(note)
    warnings = [w for w in warnings if not _only_about(w, kept)]
    return Plan(without(workload.spec, left_out), workload.key, reason, rationale, warnings, notes=notes,
                left_out=left_out)


def _only_about(caveat: str, kept: list[str]) -> bool:
    """Whether a caveat names knobs (``vm.dirty_*``) of which none stays in the plan."""
    named = re.findall(r"\b(?:vm|kernel|net|fs)\.[\w.*]+", caveat)
    return bool(named) and not any(fnmatch(k, pattern) for pattern in named for k in kept)


# --- planning within the hosts' facts -----------------------------------------------------------

def _sharing(facts) -> str:
    return "; ".join(", ".join(group) for group in shared_kernels(facts or {}).values())


def single_host(facts) -> str:
    """A host to tune alone when the kernel-wide knobs matter: the first of the first sharing group."""
    return next(iter(shared_kernels(facts or {}).values()))[0]


def leave_out_kernel_wide(spec: TuningSpec, facts: dict | None, catalog: Catalog | None = None) -> dict[str, str]:
    """Knob -> why it must stay out of ``spec`` on these hosts: the catalog's kernel-wide knobs, when
    two or more hosts share one kernel. Empty when every knob fits (or the hosts were not given)."""
    if not shared_kernels(facts or {}):
        return {}
    catalog = catalog if catalog is not None else Catalog.default()
    why = (f"kernel-wide, and {_sharing(facts)} share one kernel (same boot_id): one write changes it for all "
           "of them, so it cannot take a value per host")
    return {n: why for n in catalog.kernel_wide(spec.knob_names) if n in catalog}


def leave_out_missing(spec: TuningSpec, facts: dict | None, catalog: Catalog | None = None) -> dict[str, str]:
    """Knob -> why it must stay out of ``spec``: hosts that lack it (hello described it as absent),
    with the catalog's word on which kernels have it (the CFS tunables went to debugfs in 5.13)."""
    catalog = catalog if catalog is not None else Catalog.default()
    out = {}
    for name in spec.knob_names:
        states = {h: ((f or {}).get("knobs") or {}).get(name) for h, f in (facts or {}).items()}
        lacking = sorted(h for h, st in states.items() if isinstance(st, dict) and not st.get("exists"))
        if not lacking:
            continue
        tunable = catalog.get(name)
        kernel = ((facts or {}).get(lacking[0]) or {}).get("kernel", "")
        why = tunable.kernels.why_missing(kernel) if tunable is not None and tunable.kernels else (
            tunable.note if tunable is not None and tunable.note else "not in /proc/sys there")
        out[name] = f"missing on {', '.join(lacking)}: {why}"
    return out


def left_out_note(left_out: dict[str, str], facts) -> str:
    return (f"left out {', '.join(left_out)}: {next(iter(left_out.values()))}; to tune "
            f"{'it' if len(left_out) == 1 else 'them'}, run on one host alone (--limit {single_host(facts)})")


def without(spec: TuningSpec, names) -> TuningSpec:
    """The same spec without the knobs in ``names``."""
    data = spec.to_dict()
    data["action_space"] = [k for k in data["action_space"] if k["param"] not in names]
    data["initial_candidates"] = [c for c in (_prior_without(c, names) for c in data.get("initial_candidates", []))
                                  if c["values"]]
    return TuningSpec.from_dict(data, f"the plan for {spec.workload_name!r}")


def _prior_without(candidate: dict, names) -> dict:
    """An expert prior without the knobs in ``names``; its reason says which of its values went, since
    it may be about them (a prior left with no value is dropped by the caller)."""
    gone = [k for k in candidate["values"] if k in names]
    if not gone:
        return candidate
    reason = candidate.get("reason") or ""
    tail = f" (without its {', '.join(gone)}: left out of this plan)"
    if len(reason) + len(tail) > MAX_REASON:  # the note on what went matters more than the end of the reason
        reason = reason[:max(0, MAX_REASON - len(tail) - 1)].rstrip() + "…"
    return {**candidate, "values": {k: v for k, v in candidate["values"].items() if k not in names},
            "reason": f"{reason}{tail}".strip()[:MAX_REASON]}


def _host_warnings(workload: Workload, facts: dict) -> list[str]:
    out = []
    hosts = sorted(h for h, f in facts.items() if isinstance(f, dict))
    for tool in workload.tools:
        lacking = [h for h in hosts if isinstance(facts[h].get("tools"), dict) and tool in facts[h]["tools"]
                   and not facts[h]["tools"][tool]]  # an agent that does not look for the tool says nothing
        if lacking:
            out.append(f"{tool} is not installed on {', '.join(lacking)}; the benchmark cannot run there")
    for service in workload.services:
        down = [h for h in hosts if isinstance(facts[h].get("services"), dict)
                and not facts[h]["services"].get(service)]
        if down:
            hint = SERVICE_HINTS.get(service, "it is not running")
            out.append(f"{service} is needed but {hint} on {', '.join(down)}")
    return out
