"""The gate every spec passes before anything runs: one place that says whether a spec may run.

A spec is refused, with every problem listed, when a knob is unknown or outside the catalog's safe
bounds (controller/catalog.py), when the benchmark cannot see a knob's new value
(controller/timing.py), when its benchmark or step commands break the rules for whoever wrote
them (controller/benchcheck.py), and, given the hosts' hello facts, when a knob is missing or
read-only on a host or kernel-wide on hosts that share a kernel. `run`, `plan` and `chat` call
this one gate, so none of them runs what another would refuse.
"""

from __future__ import annotations

from typing import Any

from controller import benchcheck, timing
from controller.catalog import Catalog
from controller.errors import SpecError
from controller.spec import TuningSpec


def validate(spec: TuningSpec, catalog: Catalog, facts: dict[str, dict[str, Any]] | None = None,
             origin: str = "model") -> None:
    """Raise SpecError listing every problem, one per line, the first line a summary (one problem: one line).

    origin: who wrote the benchmark command, "user" (a --spec file), "model" or "builtin" (see benchcheck).
    """
    problems = catalog.check_spec(spec)
    problems += list(timing.unseen(spec, catalog, [n for n in spec.knob_names if n in catalog]).values())
    problems += benchcheck.problems(spec.benchmark_command, facts, origin=origin, tools=catalog.benchmark_tools,
                                    cwd=spec.benchmark_cwd)
    problems += benchcheck.step_problems(spec, origin=origin, tools=catalog.benchmark_tools)
    if facts:
        problems += catalog.check_hosts(spec, facts)
    if len(problems) == 1:
        raise SpecError(f"the spec for {spec.workload_name!r} cannot run as is: {problems[0]}")
    if problems:
        n = len(problems)
        head = f"the spec for {spec.workload_name!r} cannot run as is ({n} problem{'s' if n > 1 else ''}):"
        raise SpecError("\n".join([head] + [f"  - {p}" for p in problems]))
