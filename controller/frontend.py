"""What every front end (the command line, the MCP server) does with an inventory before and
around a run: select and connect the hosts, check them, plan a goal into a spec, restore them.

The front ends differ in how they ask and print, never in these steps, so a model driving
tunefleet through MCP meets the same planner, the same checks and the same connection rules as
a person at the command line. Heavy libraries are imported inside the functions that need them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import UserError


@dataclass(frozen=True)
class Reach:
    """How the hosts are reached: the options every connecting command shares."""

    accept_new_host_keys: bool = False
    connect_timeout: float = 5.0
    ssh_config: Path | None = None
    workers: str = "threads"
    heartbeat_timeout: float = 30.0


def load_catalog(extra: Path | None):
    """The built-in safety catalog, with a user's extra tunables file when given."""
    from controller.catalog import Catalog

    catalog = Catalog.default()
    if extra is not None:
        catalog = catalog.load_extra(extra)
    return catalog


def select(hosts: Path, limit: str | None):
    """The host specs an inventory and a --limit pattern select (no connection)."""
    from controller.fleet.inventory import load_inventory

    return load_inventory(hosts).select(limit)


def connect(hosts: Path, limit: str | None, reach: Reach = Reach(), knobs=()):
    """The selected hosts, connected with their agents started: (host specs, Fleet). `knobs`: the
    knobs hello describes (with those they depend on)."""
    from controller.catalog import ALLOWED_IN_NAMESPACE, AVAILABLE_FROM
    from controller.fleet.executor import parse_workers
    from controller.fleet.fleet import ConnectOptions, Fleet

    parse_workers(reach.workers)  # a bad --workers is refused before any host is touched
    specs = select(hosts, limit)
    if reach.ssh_config is not None and not reach.ssh_config.exists():
        raise UserError(f"--ssh-config {reach.ssh_config}: no such file")
    knobs = list(knobs) + [m[k] for m in (AVAILABLE_FROM, ALLOWED_IN_NAMESPACE) for k in knobs if k in m]
    options = ConnectOptions(connect_timeout=reach.connect_timeout, accept_new_host_keys=reach.accept_new_host_keys,
                             knobs=tuple(knobs), workers=reach.workers,
                             ssh_config=str(reach.ssh_config) if reach.ssh_config else None,
                             heartbeat_timeout=reach.heartbeat_timeout)
    return specs, Fleet.connect(specs, options)


def host_facts(hosts: Path, limit: str | None, reach: Reach = Reach(), knobs=(), strict: bool = True) -> dict:
    """hello from every host, describing `knobs`, with what else manages them (`managed`: the
    agent's scan, controller/conflicts.py); with strict=False, the hosts that answered. Changes nothing."""
    from controller import conflicts

    _, fleet = connect(hosts, limit, reach, knobs)
    with fleet:
        if fleet.failed and (strict or not fleet.hosts):
            raise next(iter(fleet.failed.values()))
        scans = conflicts.scan_fleet(fleet, list(knobs)) if knobs else {}
        return {n: {**h.facts, "managed": scans.get(n, {})} for n, h in fleet.hosts.items()}


def reachable_facts(fleet) -> dict:
    """Each reachable host's facts; none reachable is an error (nothing was changed yet)."""
    if not fleet.hosts:
        raise UserError("no host could be reached; nothing was changed")
    return {n: h.facts for n, h in fleet.hosts.items()}


def check(hosts: Path, limit: str | None, reach: Reach = Reach()) -> tuple[list[dict], float]:
    """What each host is (one row per host, whether it answered or not, with the catalog's knobs
    that something else manages there and those it lacks) and the seconds it took. Starts the
    agents, changes nothing."""
    from controller import conflicts
    from controller.catalog import Catalog, lacking
    from controller.fleet.fleet import round_trip_ms
    from controller.report import check_rows

    started = time.monotonic()
    catalog = Catalog.default()
    names = catalog.names()
    specs, fleet = connect(hosts, limit, reach, names)
    with fleet:
        rtts = fleet.map(round_trip_ms)
        rows = check_rows(specs, fleet, {n: o.value for n, o in rtts.items() if o.ok})
        scans = conflicts.scan_fleet(fleet, names)
    for r in rows:
        scan = scans.get(r["name"]) or {}
        r["managed"] = conflicts.host_lines(scan, [k for k in names if _managed(scan, k)]) if scan else []
        host = fleet.hosts.get(r["name"])
        r["lacks"] = lacking(catalog, host.facts) if host is not None else {}
    return rows, time.monotonic() - started


def _managed(scan: dict, knob: str) -> bool:
    k = (scan.get("knobs") or {}).get(knob) or {}
    return bool(k.get("files") or k.get("tuned") or k.get("daemons"))


def make_plan(goal: str | None, spec_file: Path | None, facts: dict | None = None, model: str | None = None,
              catalog=None, on_event: Callable[[str, str], None] | None = None):
    """A spec from a file, or from the goal through the strategist. Returns (spec, plan-or-None)."""
    from controller.spec import TuningSpec

    if spec_file is not None:
        return TuningSpec.load(spec_file), None
    if not goal:
        raise UserError("say what the hosts are for (a GOAL such as \"optimize for PostgreSQL\") or give --spec FILE")
    from controller.strategist import choose

    plan = choose(goal, facts, model=model, catalog=catalog, on_event=on_event)
    return plan.spec, plan


def origin(chosen) -> str:
    """Who wrote the benchmark command: the user (--spec), the model, or the built-in catalog."""
    if chosen is None:
        return "user"
    return "model" if getattr(chosen, "strategist", "builtin") == "llm" else "builtin"


def plan_record(spec, chosen, written_by: str | None = None) -> dict[str, Any]:
    """plan.json: the spec, the exact argv and who wrote it, and how the strategist chose.
    `written_by` overrides the origin (a spec an MCP client passed in is the model's)."""
    from controller.benchcheck import record

    record_ = {"spec": spec.to_dict(), "benchmark": record(spec, written_by or origin(chosen))}
    if chosen is not None:
        record_.update({"strategist": getattr(chosen, "strategist", "builtin"), "workload": chosen.workload,
                        "reason": chosen.reason, "rationale": chosen.rationale, "warnings": list(chosen.warnings),
                        "notes": list(getattr(chosen, "notes", ())),
                        "left_out": dict(getattr(chosen, "left_out", {}))})
        if getattr(chosen, "llm", None):  # which model, how many tokens (never the key)
            record_.update({"model": chosen.model, "usage": chosen.usage, "llm": chosen.llm})
    return record_


def budget_for(spec, budget: int | None) -> int:
    """The search's budget: the one asked for, else the spec's training_config.total_timesteps, else 24."""
    return budget or int(spec.training_config.get("total_timesteps") or 24)


def profiles_to_compare(names: list[str], chosen) -> list[str]:
    """--compare's profile names, checked ('auto': the profiles that fit the built-in workload)."""
    from controller import profiles

    out = []
    for name in names:
        if name == "auto":
            if chosen is None or getattr(chosen, "strategist", "builtin") != "builtin":
                raise UserError("--compare auto needs a built-in workload (a goal the built-in catalog plans); "
                                "name the profiles instead (tunefleet profiles lists them)")
            out += [p.name for p in profiles.for_workload(chosen.workload)] if chosen.workload in \
                profiles.workload_keys() else []
        else:
            out.append(profiles.get(name).name)  # an unknown name: one line listing the known ones
    return list(dict.fromkeys(out))


def restore(hosts: Path, limit: str | None, reach: Reach = Reach(), unpersist_file: str | None = None):
    """Write back every original value the agents journaled: ({host: restoring.Report}, {host:
    error}) for the hosts that answered and those that did not (or failed)."""
    from controller.fleet.restoring import restore_host

    _, fleet = connect(hosts, limit, reach)
    with fleet:
        outcomes = fleet.map(lambda h: restore_host(h, unpersist_file))
        failed = dict(fleet.failed)
    reports = {n: o.value for n, o in outcomes.items() if o.ok}
    failed.update({n: o.error for n, o in outcomes.items() if not o.ok})
    return reports, failed
