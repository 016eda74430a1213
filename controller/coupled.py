"""Keep a candidate's coupled knobs consistent before it reaches a host.

The invariants themselves live in node_agent/invariants.py (the agent refuses what breaks them).
Here a candidate mapped from the action box is repaired, deterministically, so every candidate
``TuningSpec.to_values`` produces satisfies them:

- a vector's components are made non-decreasing by ``Knob.to_value``; a strictly increasing one
  (``ip_local_port_range``) whose components meet gets its high end raised by one, or, at the top
  of its range, its low end lowered by one;
- a pair ``lesser < greater`` (or ``<=``) tuned together is repaired by raising the greater side
  (the cap: ``net.core.rmem_max``, ``vm.dirty_ratio``) to the smallest value its range allows that
  holds; when the range ends too low, the lesser side is lowered to the largest value that holds
  (a vector's earlier components follow it down, so the vector stays ordered).

The repair moves a value only as far as the invariant requires and only inside the knob's own
range, so the search's choice survives wherever it was already consistent. Ranges that cannot
satisfy a pair at all are refused when the spec is validated (``problems``).
"""

from __future__ import annotations

from node_agent import invariants


def _allowed(knob, component: int | None) -> tuple[int, int] | list[int] | None:
    """What a knob's side of a pair may take: (lo, hi) for a range, sorted ints for choices."""
    index = component or 0
    if knob.is_choice:
        ints = []
        for v in knob.values:
            words = v.split()
            if index < len(words) and words[index].lstrip("-").isdigit():
                ints.append(int(words[index]))
        return sorted(ints) or None
    if index >= len(knob.lower):
        return None
    return knob.lower[index], knob.upper[index]


def _smallest_at_least(allowed, need: int) -> int | None:
    if isinstance(allowed, tuple):
        lo, hi = allowed
        return max(lo, need) if max(lo, need) <= hi else None
    return next((v for v in allowed if v >= need), None)


def _largest_at_most(allowed, limit: int) -> int | None:
    if isinstance(allowed, tuple):
        lo, hi = allowed
        return min(hi, limit) if min(hi, limit) >= lo else None
    return next((v for v in reversed(allowed) if v <= limit), None)


def _choice_with(knob, component: int | None, value: int) -> str:
    """The choice of a choice knob whose compared component is ``value``."""
    index = component or 0
    return next(v for v in knob.values if len(v.split()) > index and v.split()[index] == str(value))


def _set(knob, component: int | None, text: str, value: int) -> str:
    if knob.is_choice:
        return _choice_with(knob, component, value)
    if component is None:
        return str(value)
    words = [int(w) for w in text.split()]
    words[component] = value
    words = [min(w, value) if i < component else w for i, w in enumerate(words)]
    return " ".join(str(w) for w in words)


def _repair_strict(knob, text: str) -> str:
    words = [int(w) for w in text.split()]
    for i in range(1, len(words)):
        if words[i] <= words[i - 1]:
            if words[i - 1] + 1 <= knob.upper[i]:
                words[i] = words[i - 1] + 1
            else:
                words[i - 1] = words[i] - 1
    return " ".join(str(w) for w in words)


def repair(values: dict[str, str], knobs) -> dict[str, str]:
    """``values`` with every invariant among the spec's own knobs made to hold (a new dict)."""
    by_name = {k.param: k for k in knobs}
    out = dict(values)
    for name, strict in invariants.ORDERED.items():
        knob = by_name.get(name)
        if strict and knob is not None and not knob.is_choice and invariants.ordered_problem(name, out[name]):
            out[name] = _repair_strict(knob, out[name])
    for pair in invariants.PAIRS:
        low_knob, high_knob = by_name.get(pair.lesser), by_name.get(pair.greater)
        if low_knob is None or high_knob is None:
            continue
        low = invariants.pair_value(pair, "lesser", out[pair.lesser])
        high = invariants.pair_value(pair, "greater", out[pair.greater])
        if invariants.holds(pair, low, high):
            continue
        step = 1 if pair.strict else 0
        raised = _smallest_at_least(_allowed(high_knob, None), low + step)
        if raised is not None:
            out[pair.greater] = _set(high_knob, None, out[pair.greater], raised)
            continue
        allowed = _allowed(high_knob, None)
        assert allowed is not None  # the cap's side of a pair has values (coupled.problems)
        high = allowed[-1]  # the largest the cap may be
        out[pair.greater] = _set(high_knob, None, out[pair.greater], high)
        lowered = _largest_at_most(_allowed(low_knob, pair.component), high - step)
        assert lowered is not None  # a validated spec's ranges let the pair hold (coupled.problems)
        out[pair.lesser] = _set(low_knob, pair.component, out[pair.lesser], lowered)
    return out


def problems(knobs) -> list[str]:
    """Pairs whose ranges in this spec cannot hold for any candidate, one line each."""
    by_name = {k.param: k for k in knobs}
    out = []
    for name, strict in invariants.ORDERED.items():
        knob = by_name.get(name)
        if strict and knob is not None and not knob.is_choice and any(
                hi <= lo for lo, hi in zip(knob.lower, knob.upper[1:])):
            out.append(f"{name}: each component's max must leave room above the previous component's min "
                       f"(components must increase)")
    for pair in invariants.PAIRS:
        low_knob, high_knob = by_name.get(pair.lesser), by_name.get(pair.greater)
        if low_knob is None or high_knob is None:
            continue
        low, high = _allowed(low_knob, pair.component), _allowed(high_knob, None)
        if low is None or high is None:
            continue
        least, most = low[0], high[-1]
        if not invariants.holds(pair._replace(nonzero=False), least, most):
            out.append(f"{invariants.describe(pair)} cannot hold in these ranges (the smallest "
                       f"{pair.lesser} is {least}, the largest {pair.greater} {most})")
    return out
