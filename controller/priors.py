"""Expert priors: complete configurations a spec asks every strategy to evaluate first.

A spec's ``initial_candidates`` are ``[{"values": {knob: value, ...}, "reason": "one line"}]``:
what a tuning expert (the built-in catalog, the LLM strategist, a user) would try before any
search. They pass the same gate as the knobs themselves: every knob of the action space is given
(a configuration, not a patch whose other knobs would be whatever the previous candidate left),
no other name, and every value inside the knob's range, which the catalog has already checked
against its safe bounds. Anything else is refused with one line naming the candidate and knob.

Every strategy evaluates them first, spread over the hosts, inside its budget
(``controller.learn.search.evaluate_priors``), so a search never ends worse than the expert's
guess and bo's study starts from what they measured.
"""

from __future__ import annotations

from typing import Any

MAX_CANDIDATES = 16
MAX_REASON = 300


def _text(value: Any) -> str | None:
    """Canonical sysctl text of a prior's value (lists joined by spaces); None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (list, tuple)):
        parts = [_text(v) for v in value]
        words = [p for p in parts if p is not None and " " not in p]
        return " ".join(words) if parts and len(words) == len(parts) else None
    if isinstance(value, (int, str)):
        text = " ".join(str(value).split())
        return text or None
    return None


def problems(candidates: Any, action_space) -> list[tuple[list, str]]:
    """Every problem with ``candidates`` against the knobs, as (path, message); [] when fine."""
    if not isinstance(candidates, list):
        return [([], "must be a list of {values, reason}")]
    if len(candidates) > MAX_CANDIDATES:
        return [([], f"at most {MAX_CANDIDATES} candidates (got {len(candidates)})")]
    knobs = {k.param: k for k in action_space}
    out: list[tuple[list[Any], str]] = []
    for i, c in enumerate(candidates):
        if not isinstance(c, dict) or not isinstance(c.get("values"), dict):
            out.append(([i], "must be an object with values (knob -> value) and reason"))
            continue
        extra = sorted(set(c) - {"values", "reason"})
        if extra:
            out.append(([i, extra[0]], "unknown field (a candidate has values and reason)"))
        reason = c.get("reason")
        if not isinstance(reason, str) or not reason.strip() or "\n" in reason.strip():
            out.append(([i, "reason"], "must be one line of text saying why"))
        elif len(reason) > MAX_REASON:
            out.append(([i, "reason"], f"longer than {MAX_REASON} characters"))
        values = c["values"]
        for name in values:
            if name not in knobs:
                out.append(([i, "values", name], "not a knob of this spec's action_space"))
        for name, knob in knobs.items():
            if name not in values:
                out.append(([i, "values", name], "missing: a candidate gives every knob of the action space"))
                continue
            text = _text(values[name])
            if text is None or not knob.contains(text):
                allowed = ", ".join(knob.values) if knob.is_choice else f"{_range(knob.min)}..{_range(knob.max)}"
                out.append(([i, "values", name], f"{values[name]!r} is outside the knob's range ({allowed})"))
    return out


def normalized(candidates: list[dict]) -> list[dict]:
    """The candidates with canonical text values (call after ``problems`` found none)."""
    return [{"values": {k: _text(v) for k, v in c["values"].items()}, "reason": c["reason"].strip()}
            for c in candidates]


def _range(bound) -> str:
    return " ".join(str(b) for b in bound) if isinstance(bound, list) else str(bound)
