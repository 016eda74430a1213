"""Commands that plan: plan (a goal or a spec file into a validated spec) and profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.commands.common import (
    AcceptOpt,
    LimitOpt,
    ModelOpt,
    SSHConfigOpt,
    TimeoutOpt,
    WorkersOpt,
    _console,
    _host_facts,
    _json_stdout,
    _strategist_events,
)
from controller.frontend import load_catalog, origin, plan_record

if TYPE_CHECKING:
    from controller.spec import TuningSpec


def profiles(
    name: str | None = typer.Argument(None, metavar="NAME", help="A profile to show in full, e.g. "
                                      "tuned:throughput-performance or redis:docs."),
    workload: str | None = typer.Option(None, "--workload", "-w", help="Only the profiles that fit this "
                                        "workload (pg-oltp, web, redis, stream, ...)."),
    profile_file: Path | None = typer.Option(None, "--profile-file", help="Also read your own profile: a TuneD "
                                             "tuned.conf (or its folder) or a YAML file shaped like servers.yaml."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: a list of profiles, or the one named."),
) -> None:
    """List the expert settings tunefleet compares with (TuneD profiles, servers' documentation), or show one.

    One profile: every sysctl with its value, where it is set and why, then the settings that are not sysctls."""
    from controller import profiles as known
    from controller.profiles.show import print_profile, print_profiles

    found = known.for_workload(workload) if workload else [known.get(n) for n in known.names()]
    if profile_file is not None:
        found = found + known.load_file(profile_file)
    if name is not None:
        chosen = [p for p in found if p.name == name] or [known.get(name)]
        if as_json:
            print(json.dumps(chosen[0].to_dict(), indent=2))
        else:
            print_profile(_console(), chosen[0])
    elif as_json:
        print(json.dumps([{"name": p.name, "summary": p.summary, "source": p.source, "version": p.version,
                           "sysctls": len(p.values), "not_sysctl": len(p.not_sysctl)} for p in found], indent=2))
    else:
        print_profiles(_console(), found)


def _make_plan(goal: str | None, spec_file: Path | None, facts: dict | None = None,
               model: str | None = None, catalog=None):
    """A spec from a file, or from the goal through the strategist (its progress on stderr)."""
    from controller.frontend import make_plan

    return make_plan(goal, spec_file, facts, model=model, catalog=catalog, on_event=_strategist_events())


def plan(
    goal: str | None = typer.Argument(None, help="What the hosts are for, in plain words."),
    hosts: Path | None = typer.Option(None, "--hosts", "-i", help="Inventory: check the plan against these hosts."),
    limit: str | None = LimitOpt,
    spec_file: Path | None = typer.Option(None, "--spec", help="Validate this spec file instead of planning."),
    catalog_file: Path | None = typer.Option(None, "--catalog", help="Extra tunables (YAML/JSON)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the spec to this file (JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    list_workloads: bool = typer.Option(False, "--list", help="List the built-in workloads."),
    model: str | None = ModelOpt,
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Path | None = SSHConfigOpt,
    workers: str = WorkersOpt,
) -> None:
    """Turn a goal into a tuning spec (benchmark, reward, knobs and ranges) and show why."""
    from controller.gate import validate

    if list_workloads:
        from controller.strategist.builtin import workloads

        for w in workloads():
            print(f"{w.key:18} {w.description}")
        return
    doc = _json_stdout(as_json)
    catalog = load_catalog(catalog_file)
    facts = None
    if hosts is not None:
        facts = _host_facts(hosts, limit, accept_new_host_keys, connect_timeout, knobs=catalog.names(),
                            ssh_config=ssh_config, workers=workers)
    spec, chosen = _make_plan(goal, spec_file, facts, model=model, catalog=catalog)
    validate(spec, catalog, facts, origin=origin(chosen))
    if output is not None:
        from controller.runs import write_json_atomic

        write_json_atomic(output, spec.to_dict())
    from controller import conflicts

    managed = {n: f.get("managed") or {} for n, f in (facts or {}).items()}
    if as_json:
        record = plan_record(spec, chosen)
        if facts:
            record["managed"] = {n: {k: (m.get("knobs") or {}).get(k) for k in spec.knob_names}
                                 for n, m in managed.items()}
            record["managed_lines"] = {n: conflicts.host_lines(m, spec.knob_names) for n, m in managed.items()}
        print(json.dumps(record, indent=2), file=doc)
    else:
        console = _console()
        _show_plan(console, spec, chosen, spec_file, facts or {})
        for name, m in managed.items():
            said = conflicts.host_lines(m, spec.knob_names) + conflicts.daemon_refusals({name: m}, spec.knob_names)
            for line in said:
                console.print(f"{name}: {line}" if not line.startswith(f"{name}: ") else line, soft_wrap=True)
        if output is not None:
            console.print(f"spec written to {output}")


def _show_plan(console, spec: TuningSpec, chosen, spec_file, hosts) -> None:
    """The plan, the exact argv the agents will exec, and what the planner left out and why."""
    from rich.markup import escape

    from controller.benchcheck import record
    from controller.report import print_plan

    print_plan(console, spec, reason=chosen.reason if chosen else f"from {spec_file}",
               rationale=chosen.rationale if chosen else None, warnings=chosen.warnings if chosen else (),
               hosts=hosts)
    bench = record(spec, origin(chosen))
    where = f"; in {bench['cwd']}" if bench["cwd"] else ""
    author = {"user": f"you, in {spec_file}", "model": "the model", "builtin": "the built-in catalog"}
    console.print(f"[bold]argv[/]: {escape(json.dumps(bench['argv']))} (exec, no shell{escape(where)}; written by "
                  f"{escape(author[bench['origin']])})", soft_wrap=True)
    for note in getattr(chosen, "notes", ()):
        console.print(f"note: {escape(note)}", soft_wrap=True)
