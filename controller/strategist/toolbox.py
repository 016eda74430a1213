"""The tools the model may call, each answered with real data, and the gate its spec must pass.

    inspect_hosts       the hosts' facts from hello: kernel, distro, CPUs, memory, tools, services
    list_tunables       the catalog's knobs that exist on the hosts: bounds, scope, current values
    optimize_workload   config_json -> the same pydantic model and safety catalog as a hand-written
                        spec, plus what matters for model output: made-up knob names, shell syntax
                        or destructive programs in the benchmark, a reward the tool never prints

The facts say which hosts share one kernel; then the kernel-wide knobs are excluded up front (the
host summary and list_tunables say so), and a design that still names them loses them with a note,
or goes back to the model when nothing else would be left.

A rejected spec comes back as a list of problems (the tool result); nothing the model proposes
leaves this module unless it passed every check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from controller import benchcheck, rewards, timing
from controller.catalog import Catalog
from controller.errors import SpecError
from controller.fleet.facts import shared_kernels
from controller.spec import TuningSpec, validation_problems
from controller.strategist import prompts
from controller.strategist.builtin import Plan, leave_out_kernel_wide, left_out_note, without, workloads

MAX_KNOBS = 8
RATIONALE_KEYS = ("rationale", "why", "reason")


@dataclass
class ToolResult:
    content: str
    plan: object | None = None
    problems: list[str] = field(default_factory=list)


class Toolbox:
    def __init__(self, goal: str, facts: dict | None, catalog=None, max_invalid: int = 3):
        self.goal = goal
        self.facts = {h: f for h, f in (facts or {}).items() if isinstance(f, dict)}
        self.catalog = catalog if catalog is not None else Catalog.default()
        self.max_invalid = max_invalid
        self.rejections: list[list[str]] = []

    # --- what the model sees first ---------------------------------------------------------

    def examples(self) -> list[dict]:
        return [{"workload": w.key, "description": w.description,
                 "config": {"workload_name": w.name, **w.spec_data}} for w in workloads()]

    def host_summary(self) -> str:
        if not self.facts:
            return ("none given (planning without --hosts): tools, services and knobs cannot be checked; "
                    "assume a typical Linux server")
        parts = []
        for name, f in self.facts.items():
            distro = (f.get("distro") or {}).get("name") or "Linux"
            parts.append(f"{name} ({distro}, kernel {f.get('kernel')}, {f.get('cpus')} CPUs)")
        return (f"{len(parts)}: " + ", ".join(parts) + ". " + self.shared_kernel_fact()
                + "Call inspect_hosts for details.")

    def excluded(self) -> list[str]:
        """Catalog knobs these hosts cannot tune in parallel: kernel-wide ones, when they share a kernel."""
        return [t.name for t in self.catalog if t.scope == "kernel"] if shared_kernels(self.facts) else []

    def shared_kernel_fact(self) -> str:
        groups = shared_kernels(self.facts)
        if not groups:
            return ""
        sharing = "; ".join(", ".join(g) for g in groups.values())
        return (f"{sharing} share one kernel (same boot_id): a kernel-wide knob cannot take a value per host "
                f"there, so these are excluded: {', '.join(self.excluded())}; use per-namespace knobs "
                "(scope netns in list_tunables). ")

    # --- dispatch ----------------------------------------------------------------------------

    def call(self, name: str, arguments: str | None) -> ToolResult:
        try:
            args = json.loads(arguments or "{}")
        except ValueError as e:
            return self._reject([f"the arguments of {name} are not valid JSON ({e}); send "
                                 '{"config_json": "<the configuration as a JSON string>"}'])
        if not isinstance(args, dict):
            args = {}
        if name == "inspect_hosts":
            return ToolResult(json.dumps(self.inspect_hosts(), indent=1))
        if name == "list_tunables":
            return ToolResult(json.dumps(self.list_tunables(str(args.get("prefix") or "")), indent=1))
        if name == prompts.OPTIMIZE:
            config = args.get("config_json")
            if config is None:
                return self._reject(['optimize_workload needs one argument, config_json (a string holding the '
                                     'configuration JSON)'])
            return self.optimize_workload(config)
        known = ", ".join(t["function"]["name"] for t in prompts.TOOLS)
        return ToolResult(f"unknown tool {name!r}; the tools are: {known}")

    # --- the tools ---------------------------------------------------------------------------

    def inspect_hosts(self) -> dict:
        if not self.facts:
            return {"hosts": [], "note": "no hosts were given: plan for a typical Linux server; every benchmark "
                                         "tool and knob will be checked again when the run connects"}
        boots: dict[str, list[str]] = {}
        for n, f in self.facts.items():
            boots.setdefault(f.get("boot_id") or n, []).append(n)
        hosts = []
        for n, f in self.facts.items():
            distro = f.get("distro") or {}
            hosts.append({
                "name": n, "kernel": f.get("kernel"), "distro": " ".join(
                    str(x) for x in (distro.get("name"), distro.get("version")) if x) or None,
                "cpus": f.get("cpus"), "mem_total_mb": (f.get("mem_total_kb") or 0) // 1024,
                "tools_installed": sorted(k for k, v in (f.get("tools") or {}).items() if v),
                "tools_missing": sorted(k for k, v in (f.get("tools") or {}).items() if not v),
                "services_running": sorted(k for k, v in (f.get("services") or {}).items() if v),
                "shares_kernel_with": sorted(x for x in boots[f.get("boot_id") or n] if x != n),
            })
        return {"hosts": hosts, "always_available": ["tunefleet-bench accept-storm", "tunefleet-bench stream"]}

    def list_tunables(self, prefix: str = "") -> dict:
        out, unavailable = [], {}
        excluded = self.excluded()
        for t in self.catalog:
            if prefix and not t.name.startswith(prefix):
                continue
            if t.name in excluded:
                unavailable[t.name] = "kernel-wide, and these hosts share one kernel"
                continue
            states = {h: ((f.get("knobs") or {}).get(t.name)) for h, f in self.facts.items()}
            known = {h: s for h, s in states.items() if isinstance(s, dict)}
            bad = sorted(h for h, s in known.items() if not s.get("exists") or not s.get("writable"))
            if bad:
                unavailable[t.name] = f"missing or read-only on {', '.join(bad)}"
                continue
            entry = {"name": t.name, "type": t.kind, "scope": t.scope, "safe_bounds": t.bounds_text(),
                     "what": t.description}
            if t.note:
                entry["note"] = t.note
            values = {h: s.get("value") for h, s in known.items()}
            if values:
                entry["current"] = values if len(set(values.values())) > 1 else next(iter(values.values()))
            out.append(entry)
        result: dict[str, Any] = {"tunables": out}
        if unavailable:
            result["not_available_on_these_hosts"] = unavailable
        if self.facts and not any((f.get("knobs") or {}) for f in self.facts.values()):
            result["note"] = "the hosts did not report knob values; existence is checked when the run connects"
        return result

    def optimize_workload(self, config_json) -> ToolResult:
        data, problems = self._parse(config_json)
        if problems:
            return self._reject(problems)
        assert data is not None  # _parse gives the data or its problems
        rationale = _pop_rationale(data)
        spec, problems = self._spec(data)
        if spec is None:
            return self._reject(problems)
        left_out = leave_out_kernel_wide(spec, self.facts, self.catalog)
        if left_out:
            try:
                spec = without(spec, left_out)
            except SpecError:  # nothing tunable would remain: the model has to redesign
                return self._reject([f"every knob in action_space ({', '.join(left_out)}) is kernel-wide, and "
                                     + self.shared_kernel_fact() + "Design with per-namespace knobs."])
        unseen = timing.unseen(spec, self.catalog, [n for n in spec.knob_names if n in self.catalog])
        if unseen:
            try:
                spec = without(spec, unseen)
            except SpecError:  # nothing measurable would remain: the model has to redesign
                return self._reject(list(unseen.values()))
        problems = self._check(spec)
        if problems:
            return self._reject(problems)
        plan = self._plan(spec, rationale)
        if left_out:
            plan.left_out = left_out
            plan.rationale.update({n: f"left out: {why}" for n, why in left_out.items()})
            plan.notes.append(left_out_note(left_out, self.facts))
        for name, why in unseen.items():
            plan.left_out[name] = why
            plan.rationale[name] = f"left out: {why}"
            plan.notes.append(f"left out {name}: {why}")
        return ToolResult("accepted", plan=plan)

    # --- the gate ------------------------------------------------------------------------------

    def _parse(self, config_json) -> tuple[dict | None, list[str]]:
        if isinstance(config_json, dict):  # some servers decode nested JSON for us
            return config_json, []
        if not isinstance(config_json, str):
            return None, [f"config_json must be a string holding a JSON object, got {type(config_json).__name__}"]
        text = config_json.strip()
        if text.startswith("```"):  # a fenced block: take what is inside
            text = text.strip("`").split("\n", 1)[-1] if "\n" in text else text.strip("`")
        try:
            data = json.loads(text)
        except ValueError as e:
            return None, [f"config_json is not valid JSON: {e}"]
        if not isinstance(data, dict):
            return None, [f"config_json must be a JSON object, got {type(data).__name__}"]
        return data, []

    def _spec(self, data: dict):
        try:
            return TuningSpec.model_validate(data), []
        except ValidationError as e:
            return None, _pydantic_problems(e)

    def _check(self, spec: TuningSpec) -> list[str]:
        unknown = [n for n in spec.knob_names if n not in self.catalog]
        problems = [f"{n}: no such tunable (made up, or not in tunefleet's safety catalog); use only names "
                    "that list_tunables returns" for n in dict.fromkeys(unknown)]
        problems += [p for p in self.catalog.check_spec(spec) if not any(p.startswith(f"{n}: ") for n in unknown)]
        if len(spec.action_space) > MAX_KNOBS:
            problems.append(f"action_space has {len(spec.action_space)} knobs; at most {MAX_KNOBS} (each knob costs "
                            "benchmark runs): keep the ones most likely to move the reward")
        problems += benchcheck.problems(spec.benchmark_command, self.facts or None, origin=benchcheck.MODEL,
                                        tools=self.catalog.benchmark_tools, cwd=spec.benchmark_cwd)
        problems += _reward_fits_tool(spec)
        if self.facts and not unknown:
            problems += self.catalog.check_hosts(spec, self.facts)
        return list(dict.fromkeys(problems))

    def _reject(self, problems: list[str]) -> ToolResult:
        self.rejections.append(problems)
        return ToolResult(prompts.rejected(problems, len(self.rejections), self.max_invalid), problems=problems)

    def _plan(self, spec: TuningSpec, rationale: dict):
        warnings = list(self.catalog.advice(spec))
        missing = [n for n in spec.knob_names if not rationale.get(n)]
        if missing:
            warnings.append(f"the model gave no rationale for {', '.join(missing)}")
        if not self.facts:
            warnings.append("planned without hosts: tools and knobs are checked again when the run connects")
        return Plan(spec=spec, workload=spec.workload_name, reason=f"designed by the model for {self.goal!r}",
                    rationale={n: rationale.get(n, "") for n in spec.knob_names}, warnings=warnings,
                    strategist="llm")


def _pop_rationale(data: dict) -> dict[str, str]:
    """Rationale per knob, from each action_space entry ("rationale", or "why"/"reason") or a top-level
    {knob: text}; each knob keeps its own in the spec, so spec files written with -o carry it."""
    out = {}
    top = data.pop("rationale", None)
    if isinstance(top, dict):
        out.update({str(k): " ".join(str(v).split()) for k, v in top.items() if v})
    for knob in data.get("action_space") or []:
        if not isinstance(knob, dict) or not isinstance(knob.get("param"), str):
            continue
        for key in RATIONALE_KEYS:
            text = knob.get(key) if key == "rationale" else knob.pop(key, None)
            if text and isinstance(text, str):
                out.setdefault(knob["param"], " ".join(text.split()))
        if knob["param"] in out:
            knob["rationale"] = out[knob["param"]]
    return out


def _reward_fits_tool(spec: TuningSpec) -> list[str]:
    metric = rewards.get(spec.reward_metric)
    cmd = spec.benchmark_command
    argv = cmd if isinstance(cmd, list) else cmd.split()
    prog = argv[0].rsplit("/", 1)[-1] if argv else ""
    if metric is None or not metric.tools or prog not in benchcheck.KNOWN_TOOLS or prog in metric.tools:
        return []
    return [f"reward_metric {spec.reward_metric!r} is printed by {', '.join(metric.tools)}, not by {prog} "
            f"({metric.example}); choose a metric {prog} prints"]


def _pydantic_problems(e) -> list[str]:
    return validation_problems(e, root="config")
