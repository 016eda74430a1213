"""Invariants between kernel knobs, stated once for both ends.

The kernel accepts many inconsistent settings without a word: ``net.ipv4.tcp_rmem = 4096 100 50``
is taken as written, a ``vm.dirty_background_ratio`` at or above ``vm.dirty_ratio`` is silently
replaced by half of it. tunefleet never hands the kernel such a set. The controller repairs a
candidate before it leaves (controller/coupled.py, deterministic, documented there); the agent
refuses an ``apply`` that would still break one (a hostile or broken controller, or a partner knob
the spec does not tune). Stdlib only, Python >= 3.7.

Two kinds of invariant:

- ``ORDERED``: the components of one vector knob never decrease (min <= default <= max of a
  buffer triple; strictly increasing for ``ip_local_port_range``, low < high).
- ``PAIRS``: one knob (or one component of it) stays below another. ``always`` pairs are checked
  against the host's current value of the partner when only one side is written; the others
  ("caps") only when both are written together, because the kernel itself does not couple them:
  TCP autotuning grows buffers up to ``tcp_rmem[2]`` whatever ``net.core.rmem_max`` says (the
  kernel's own defaults have tcp_rmem max 6 MiB above an rmem_max of 208 KiB), so a cap is only
  kept consistent when a spec sets both. Pairs whose ``nonzero`` flag is set only hold while
  both values are in force (non-zero): the kernel zeroes ``vm.dirty_ratio`` when
  ``vm.dirty_bytes`` is written, and the other way round.

``net.ipv4.tcp_max_syn_backlog`` and ``net.core.somaxconn`` are not a pair: the kernel applies
each as its own limit (half-open requests, accept queue), neither bounds the other.
"""

import collections

# name -> strict (True: strictly increasing components)
ORDERED = {
    "net.ipv4.tcp_rmem": False,
    "net.ipv4.tcp_wmem": False,
    "net.ipv4.tcp_mem": False,
    "net.ipv4.udp_mem": False,
    "net.ipv4.ip_local_port_range": True,
}

Pair = collections.namedtuple("Pair", "lesser component greater strict always nonzero")

PAIRS = (
    Pair("vm.dirty_background_ratio", None, "vm.dirty_ratio", True, True, True),
    Pair("vm.dirty_background_bytes", None, "vm.dirty_bytes", True, True, True),
    Pair("net.ipv4.tcp_rmem", 2, "net.core.rmem_max", False, False, False),
    Pair("net.ipv4.tcp_wmem", 2, "net.core.wmem_max", False, False, False),
    Pair("net.core.rmem_default", None, "net.core.rmem_max", False, False, False),
    Pair("net.core.wmem_default", None, "net.core.wmem_max", False, False, False),
)


def _ints(text):
    try:
        return [int(w) for w in str(text).split()]
    except ValueError:
        return None


def describe(pair):
    """``net.ipv4.tcp_rmem[max] <= net.core.rmem_max``, for messages and documentation."""
    lesser = pair.lesser + ("[max]" if pair.component == 2 else "")
    return "%s %s %s" % (lesser, "<" if pair.strict else "<=", pair.greater)


def pair_value(pair, side, text):
    """The integer a pair compares for ``side`` ("lesser" or "greater"), or None."""
    ints = _ints(text)
    if not ints:
        return None
    index = pair.component if side == "lesser" and pair.component is not None else 0
    return ints[index] if index < len(ints) else None


def holds(pair, low, high):
    """Whether lesser value ``low`` and greater value ``high`` satisfy the pair."""
    if low is None or high is None or (pair.nonzero and (low == 0 or high == 0)):
        return True
    return low < high if pair.strict else low <= high


def ordered_problem(name, text):
    """Why a vector value breaks its order, or None."""
    strict = ORDERED.get(name)
    ints = _ints(text)
    if strict is None or not ints:
        return None
    for a, b in zip(ints, ints[1:]):
        if b < a or (strict and b == a):
            return "%s = %r: components must %s" % (
                name, text, "increase (low < high)" if strict else "not decrease (min <= default <= max)")
    return None


def violations(values, current=None):
    """Problems of a set of values ``{name: text}`` about to be written, one line each.

    ``current(name)`` gives a knob's value on the host (text, or None when absent): it is asked
    for the partner of an ``always`` pair when only one side is in ``values``.
    Returns ``[(names involved that are in values, message)]``.
    """
    out = []
    for name, text in values.items():
        problem = ordered_problem(name, text)
        if problem:
            out.append(([name], problem))
    for pair in PAIRS:
        has_low, has_high = pair.lesser in values, pair.greater in values
        if not (has_low or has_high) or (not (has_low and has_high) and not (pair.always and current)):
            continue
        low_text = values[pair.lesser] if has_low else current(pair.lesser)
        high_text = values[pair.greater] if has_high else current(pair.greater)
        low, high = pair_value(pair, "lesser", low_text), pair_value(pair, "greater", high_text)
        if not holds(pair, low, high):
            involved = [n for n in (pair.lesser, pair.greater) if n in values]
            out.append((involved, "%s must hold, got %s and %s" % (describe(pair), low, high)))
    return out
