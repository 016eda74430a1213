"""Past runs, read back from their run folders.

A run folder is written by several versions of tunefleet and may be cut short (an interrupted
run has no result.json), so everything here reads defensively: a missing file or field gives
None, never an exception, and a folder without a spec is not a run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import UserError
from controller.runs import DEFAULT_ROOT


@dataclass
class RunRecord:
    path: Path
    spec: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)
    hosts: dict = field(default_factory=dict)
    result: dict | None = None
    trials: list[dict] = field(default_factory=list)

    @property
    def started(self) -> float:
        """When the run began: its first trial, else when its spec was written."""
        times = [t["time"] for t in self.trials[:1] if isinstance(t.get("time"), (int, float))]
        return times[0] if times else (self.path / "spec.json").stat().st_mtime

    @property
    def verified(self) -> bool:
        """A significant improvement, verified against the originals: the only result worth keeping."""
        r = self.result or {}
        v = r.get("verification") or {}
        return bool(r.get("success") and v.get("significant") and (v.get("change_pct") or 0) > 0)

    def summary(self) -> dict:
        r = self.result or {}
        v = r.get("verification") or {}
        return {
            "run": str(self.path),
            "time": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started)),
            "workload": self.spec.get("workload_name") or r.get("workload_name"),
            "strategy": r.get("strategy"),
            "hosts": sorted(self.hosts) or sorted(r.get("hosts") or {}),
            "budget": r.get("budget"),
            "verdict": r.get("verdict") or "no result (interrupted or failed)",
            "verified_change_pct": round(v["change_pct"], 2) if v.get("change_pct") is not None else None,
            "significant": bool(v.get("significant")),
            "success": bool(r.get("success")),
        }


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _jsonl(path: Path) -> list[dict]:
    """trials.jsonl; a line cut short by a crash is skipped, not fatal."""
    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def load_run(path: str | os.PathLike, *, trials: bool = True) -> RunRecord:
    """One run folder; a UserError when it is not one."""
    p = Path(path)
    spec = _json(p / "spec.json")
    if not isinstance(spec, dict):
        raise UserError(f"{p}: not a run folder (no spec.json)")
    plan = _json(p / "plan.json")
    hosts = _json(p / "hosts.json")
    result = _json(p / "result.json")
    return RunRecord(path=p, spec=spec, plan=plan if isinstance(plan, dict) else {},
                     hosts=hosts if isinstance(hosts, dict) else {},
                     result=result if isinstance(result, dict) else None,
                     trials=_jsonl(p / "trials.jsonl") if trials else [])


def resolve_run(name: str, root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """RUN as a folder path, or as a folder name (or unique prefix) under the runs folder."""
    p = Path(name)
    if (p / "spec.json").exists():
        return p
    base = Path(root)
    matches = sorted(c for c in base.glob(f"{name}*") if (c / "spec.json").exists()) if base.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(f"{name}: matches {len(matches)} runs in {base}: " + ", ".join(m.name for m in matches[:5]))
    raise UserError(f"{name}: no such run folder (looked in . and {base})")


def list_runs(root: str | os.PathLike = DEFAULT_ROOT) -> list[RunRecord]:
    """Every run under root, oldest first."""
    base = Path(root)
    if not base.is_dir():
        raise UserError(f"{base}: no runs folder (runs are written to ./runs unless --run-dir says otherwise)")
    runs = [load_run(c, trials=False) for c in base.iterdir() if (c / "spec.json").is_file()]
    for r in runs:  # the first trial's time, without reading every trials file whole
        first = _first_line(r.path / "trials.jsonl")
        if first:
            r.trials = [first]
    return sorted(runs, key=lambda r: (r.started, r.path.name))


def _first_line(path: Path) -> dict | None:
    try:
        with open(path) as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None


def print_runs(console, runs: list[RunRecord]) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("time", "run", "workload", "strategy", "hosts", "budget", "verified change", "verdict"):
        table.add_column(col, justify="right" if col in ("budget", "verified change") else "left")
    for r in runs:
        s = r.summary()
        change = s["verified_change_pct"]
        shown = "-" if change is None else f"{change:+.1f}%"
        if s["success"]:
            shown = f"[green]{shown}[/]"
        table.add_row(s["time"], r.path.name, s["workload"] or "?", s["strategy"] or "-", ",".join(s["hosts"]),
                      "-" if s["budget"] is None else str(s["budget"]), shown, s["verdict"].split(" (")[0])
    console.print(table)
