"""What the CLI shows: host tables and result summaries (rich), and their JSON forms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller import pairs
from controller.errors import SpecError
from controller.fleet.fleet import Fleet

if TYPE_CHECKING:
    from controller.spec import TuningSpec

_ROW_KEYS = ("name", "address", "ok", "error", "hostname", "kernel", "boot_id", "shares_kernel_with", "distro",
             "python", "cpus", "mem_total_mb", "user", "agent_hash", "uploaded", "tools", "services", "recovered",
             "rtt_ms")


def check_rows(specs, fleet: Fleet, rtt_ms: dict[str, float]) -> list[dict]:
    """One object per host, in inventory order, whether it answered or not."""
    shared = {n: boot for boot, names in fleet.shared_kernels().items() for n in names}
    rows = []
    for spec in specs:
        host = fleet.hosts.get(spec.name)
        if host is None:
            err = fleet.failed.get(spec.name)
            rows.append({**dict.fromkeys(_ROW_KEYS), "name": spec.name, "address": spec.address, "ok": False,
                         "shares_kernel_with": [], "tools": [], "services": [], "recovered": {},
                         "error": err.message if err else "not connected"})
            continue
        f = host.facts
        rows.append({
            "name": spec.name, "address": spec.address, "ok": True, "error": None,
            "hostname": f.get("hostname"), "kernel": f.get("kernel"), "boot_id": f.get("boot_id"),
            "shares_kernel_with": sorted(n for n, b in shared.items() if b == f.get("boot_id") and n != spec.name),
            "distro": (f.get("distro") or {}).get("name"), "python": f.get("python"),
            "cpus": f.get("cpus"), "mem_total_mb": (f.get("mem_total_kb") or 0) // 1024,
            "user": f.get("user"), "agent_hash": f.get("agent_hash"), "uploaded": host.uploaded,
            "tools": sorted(k for k, v in (f.get("tools") or {}).items() if v),
            "services": sorted(k for k, v in (f.get("services") or {}).items() if v),
            "recovered": f.get("recovered") or {},
            "rtt_ms": round(rtt_ms[spec.name], 3) if spec.name in rtt_ms else None,
        })
    return rows


def print_check(console, rows: list[dict], elapsed: float) -> None:
    from rich.table import Table

    table = Table(title=None, show_lines=False)
    for col in ("host", "address", "status", "kernel", "distro", "python", "cpus", "mem", "kernel shared with", "rtt"):
        table.add_column(col)
    for r in rows:
        if not r["ok"]:
            table.add_row(r["name"], r["address"], "[red]failed[/]", "", "", "", "", "", "", "")
            continue
        table.add_row(
            r["name"], r["address"], "[green]ok[/]" + (" *" if r["uploaded"] else ""),
            r["kernel"] or "", r["distro"] or "", r["python"] or "", str(r["cpus"] or ""),
            f"{r['mem_total_mb']} MB", ", ".join(r["shares_kernel_with"]) or "-",
            f"{r['rtt_ms']:.2f} ms" if r["rtt_ms"] is not None else "",
        )
    console.print(table)
    if any(r.get("uploaded") for r in rows):
        console.print("* agent uploaded (new version); later runs reuse it")
    ok = sum(r["ok"] for r in rows)
    console.print(f"{ok}/{len(rows)} hosts healthy in {elapsed:.2f} s")
    if any(r.get("shares_kernel_with") for r in rows):
        console.print("[yellow]note:[/] hosts that share a kernel share every kernel-wide knob (vm.*, kernel.*); "
                      "only per-namespace knobs can be tuned on them in parallel")
    for r in rows:
        if r.get("recovered"):
            console.print(f"[yellow]note:[/] {r['name']}: restored values left by an interrupted run: "
                          + ", ".join(f"{k} = {v}" for k, v in r["recovered"].items()))


def print_plan(console, spec: TuningSpec, *, reason: str = "", rationale: dict | None = None, warnings=(),
               hosts=()) -> None:
    """What is about to run, before anything changes."""
    from rich.table import Table

    console.print(f"[bold]workload[/]: {spec.workload_name}" + (f"  ({reason})" if reason else ""))
    console.print(f"[bold]benchmark[/]: {spec.benchmark_command}")
    console.print(f"[bold]reward[/]: {spec.reward_metric} ({spec.goal})")
    if hosts:
        console.print(f"[bold]hosts[/]: {', '.join(hosts)}")
    print_steps(console, spec, list(hosts))
    table = Table(box=None, pad_edge=False)
    facts = hosts if isinstance(hosts, dict) else {}  # host -> facts: show what each knob is today
    for col in ("knob", "range", "scale") + (("current",) if facts else ()) + ("why",):
        table.add_column(col)
    rationale = rationale or {}
    for knob in spec.action_space:
        rng = " | ".join(map(str, knob.values)) if knob.values else f"{_text(knob.min)} .. {_text(knob.max)}"
        why = rationale.get(knob.param) or getattr(knob, "rationale", None) or ""
        now = (_current(facts, knob.param),) if facts else ()
        table.add_row(knob.param, rng, "choice" if knob.values else str(getattr(knob, "scale", "") or ""), *now, why)
    console.print(table)
    priors = getattr(spec, "initial_candidates", None) or []
    if priors:
        console.print(f"[bold]expert priors[/] (evaluated first, inside the budget): {len(priors)}")
        for i, c in enumerate(priors, 1):
            values = ", ".join(f"{k} = {_text(v)}" for k, v in c["values"].items())
            console.print(f"  {i}. {values}" + (f"  ({c['reason']})" if c.get("reason") else ""), soft_wrap=True)
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}")


def print_steps(console, spec: TuningSpec, hosts: list[str]) -> None:
    """What a run does besides the benchmark: its pairs, its service and steps, its bounds."""
    from rich.markup import escape

    if spec.peer is not None:
        try:
            pairing = pairs.pair(spec, hosts) if hosts else None
            shown = pairing.describe() + "".join(f"; {h} sits out" for h in pairing.left_out) if pairing else "auto"
        except SpecError as e:
            shown = f"cannot be made: {e}"
        console.print(f"[bold]pairs[/] (client -> server): {escape(shown)}")
        link = spec.peer.link
        if link is not None:
            console.print(f"[bold]link[/]: {link.delay_ms:g} ms, {link.rate_mbit:g} Mbit/s, {link.loss_pct:g}% loss "
                          "(emulated on each client toward its server, removed at the end)")
    service = getattr(spec, "service", None)
    if service is not None:
        console.print(f"[bold]service[/] {escape(service.name)}: start {escape(_cmd(service.start))}; stop "
                      f"{escape(_cmd(service.stop))}; restart: {service.restart}", soft_wrap=True)
    for label, commands in (("setup", spec.setup), ("reset", [spec.reset] if spec.reset else []),
                            ("warm-up", [spec.warmup] if spec.warmup else []), ("teardown", spec.teardown)):
        for command in commands or []:
            console.print(f"[bold]{label}[/]: {escape(_cmd(command))}", soft_wrap=True)
    for c in getattr(spec, "constraints", None) or []:
        console.print(f"[bold]constraint[/]: {c.describe()} (a winner that breaks it is not claimed)")


def _cmd(command) -> str:
    import shlex

    return command if isinstance(command, str) else shlex.join(command)


def _knob_value(facts: dict, knob: str):
    return (((facts or {}).get("knobs") or {}).get(knob) or {}).get("value")


def _current(facts: dict[str, dict], knob: str) -> str:
    """A knob's value on every host: once when they agree, else per host."""
    values = {n: _knob_value(f, knob) for n, f in facts.items()}
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())) or "?")
    return "; ".join(f"{n}: {v if v is not None else '?'}" for n, v in values.items())


def print_changes(console, facts: dict[str, dict], new: dict[str, str]) -> None:
    """current -> new for every host and knob, before anything is applied."""
    for name, f in facts.items():
        changes = [f"{k} {_knob_value(f, k) or '?'} -> {v}" for k, v in new.items() if _knob_value(f, k) != v]
        console.print(f"{name}: " + (", ".join(changes) if changes else "already on the best configuration"))


def _text(value) -> str:
    """A bound as sysctl text: vectors as their space-separated words."""
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def print_result(console, result: dict) -> None:
    from rich.table import Table

    v = result.get("verification")
    ok = result.get("success")
    console.print()
    console.print(f"[bold]{result['workload_name']}[/] — {result['reward_metric']} ({result['goal']}), "
                  f"{result['evaluations']} evaluations with {result['strategy']}")
    colour = "green" if ok else "yellow"
    console.print(f"[bold {colour}]{result['verdict']}[/]")
    table = Table(box=None, pad_edge=False)
    for col in ("host", "baseline (median)", "cv", "best seen", "verified change", "95% CI", "p"):
        table.add_column(col, justify="left" if col == "host" else "right")
    for name, h in result["hosts"].items():
        base = h.get("baseline") or {}
        hv = h.get("verification") or {}
        seen = h.get("best_seen") or {}
        table.add_row(
            name + (" (dropped)" if h.get("dropped") else ""),
            f"{base['median']:.4g}" if base else "-",
            f"{base['cv'] * 100:.1f}%" if base else "-",
            f"{seen['change_pct']:+.1f}%" if seen and seen.get("change_pct") is not None else "-",
            f"{hv['change_pct']:+.1f}%" if hv else "-",
            f"{hv['ci_low_pct']:+.1f}% .. {hv['ci_high_pct']:+.1f}%" if hv else "-",
            f"{hv['p_value']:.3g}" if hv else "-",
        )
    console.print(table)
    if result.get("pairs"):
        console.print("pairs (client -> server): " + ", ".join(f"{c} -> {s}" for c, s in result["pairs"].items()))
    best = ", ".join(f"{k} = {val}" for k, val in result["best_config"].items())
    console.print(f"[bold]best configuration[/]: {best}")
    confirm = result.get("confirm") or {}
    if confirm.get("confirmed"):
        console.print(f"(chosen after re-measuring the search's top {len(confirm['candidates'])} configurations "
                      f"{confirm['repeats_per_host']} time(s) on each host)")
    if not ok and v:
        seen = result["best_seen"]
        console.print(f"(best single sample seen: {seen['change_pct']:+.1f}% on {seen['host']} — unverified)")
    print_measured(console, result)
    console.print(importance_line(result.get("importance")))
    for name, why in (result.get("dropped") or {}).items():
        console.print(f"[yellow]dropped[/] {name}: {why}")
    for name, how in (result.get("rejoined") or {}).items():
        console.print(f"[yellow]rejoined[/] {name}: {how}")
    for name, d in (result.get("drift") or {}).items():
        for knob, left in (d.get("left_as_set") or {}).items():
            console.print(f"[yellow]left as set[/] {name}: {knob} = {left.get('found')}, written by someone else "
                          f"(tunefleet had {left.get('ours')}, original {left.get('original')}); not written back")
    console.print(f"run folder: {result['run_dir']}")


def importance_line(importance: dict | None) -> str:
    """Which knobs mattered, as shares of the explained variation; plain words when none stood out."""
    shown = [(k, v) for k, v in (importance or {}).items() if v >= 0.005]
    if not shown:
        return "knobs that mattered: none stood out from the noise in these evaluations"
    return "knobs that mattered: " + ", ".join(f"{k} ({v * 100:.0f}%)" for k, v in shown)


def _num(x: float) -> str:
    """A measured figure: whole numbers from 1000 up, four significant digits below."""
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def _change_text(c: dict | None) -> str:
    if not c:
        return "-"
    return f"{c['change_pct']:+.1f}% ({c['ci_low_pct']:+.1f}% .. {c['ci_high_pct']:+.1f}%)"


def versus(c: dict | None) -> str:
    """The winner against a compared arm, in words: better, worse, or a tie (the CI holds zero)."""
    if not c:
        return "not measured"
    if c["significant"] and c["change_pct"] > 0:
        return "tunefleet better"
    if c["significant"]:
        return "profile better"
    return "tie"


def print_measured(console, result: dict) -> None:
    """What the verification measured besides the objective: each constraint, the reported metrics,
    and every compared expert profile against the original and against the winner."""
    from rich.table import Table

    for c in result.get("constraints") or []:
        limit = f"<= {c['max']:g}" if "max" in c else f">= {c['min']:g}"
        for arm in ("original", "best"):
            b = c["arms"].get(arm)
            if b:
                holds = {True: "holds", False: "BROKEN", None: "not shown either way"}[b["holds"]]
                console.print(f"constraint {c['metric']} {limit}, {arm}: median {_num(b['median'])} "
                              f"(95% CI {_num(b['ci_low'])} to {_num(b['ci_high'])}): {holds}")
    observed = result.get("observed") or {}
    metrics = sorted({m for values in observed.values() for m in values})
    for m in metrics:
        console.print(f"also measured, {m} (median): " + ", ".join(
            f"{arm} {_num(values[m])}" for arm, values in observed.items() if m in values))
    arms = result.get("arms") or {}
    if not arms:
        return
    table = Table(box=None, pad_edge=False, title="expert profiles, measured in the same verification",
                  title_justify="left")
    for col in ("profile", "applied", "vs original (95% CI)", "tunefleet vs it (95% CI)", ""):
        table.add_column(col)
    for name, a in arms.items():
        given = a["values"]
        values = given if isinstance(given, dict) and all(isinstance(v, str) for v in given.values()) else {}
        applied = ", ".join(f"{k} = {v}" for k, v in values.items()) or "(per host)"
        table.add_row(name, applied, _change_text(a.get("verification")), _change_text(a.get("best_vs")),
                      versus(a.get("best_vs")))
    console.print(table)
    left = {k for a in arms.values() for k in (a.get("left_out") or {})}
    if left:
        console.print(f"left out of the profiles on these hosts: {', '.join(sorted(left))} (result.json says why)")
