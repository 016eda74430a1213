"""What the agents' hello facts say about the fleet as a whole: which hosts share one kernel.

Hosts with one boot_id (containers, network namespaces, the local fleet) share every kernel-wide
knob: the catalog refuses such a knob on them, the planners leave it out, and a compared profile's
kernel-wide values are left out of the verification. Plain data in, plain data out: the planners
and the catalog use it without connecting anything (and without loading SSH).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def shared_kernels(facts: Mapping[str, dict[str, Any] | None]) -> dict[str, list[str]]:
    """boot_id -> the hosts (two or more) that run on that one kernel, from their hello facts.

    Hosts in name order, whatever order the facts came in, so plans and refusals name them the same
    way every time; a host without facts (None) or without a boot_id shares nothing."""
    by_boot: dict[str, list[str]] = {}
    for h in sorted(facts):
        boot_id = (facts[h] or {}).get("boot_id")
        if boot_id:
            by_boot.setdefault(boot_id, []).append(h)
    return {b: group for b, group in by_boot.items() if len(group) > 1}
