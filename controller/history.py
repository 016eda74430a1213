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
from controller.result import RunResult
from controller.runs import DEFAULT_ROOT, write_text_atomic


@dataclass
class RunRecord:
    path: Path
    spec: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)
    hosts: dict = field(default_factory=dict)
    result: RunResult | None = None
    trials: list[dict] = field(default_factory=list)

    @property
    def started(self) -> float:
        """When the run began: its first trial, else when its spec was written."""
        times = [t["time"] for t in self.trials[:1] if isinstance(t.get("time"), (int, float))]
        return times[0] if times else (self.path / "spec.json").stat().st_mtime

    @property
    def verified(self) -> bool:
        """A significant improvement, verified against the originals: the only result worth keeping."""
        return self.result is not None and self.result.succeeded

    def as_dict(self) -> dict:
        """The result as result.json holds it ({} when there is none)."""
        return self.result.to_dict() if self.result is not None else {}

    def summary(self) -> dict:
        r = self.result
        v = r.verification if r is not None else None
        return {
            "run": str(self.path),
            "time": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started)),
            "workload": self.spec.get("workload_name") or (r.workload_name if r else None),
            "strategy": r.strategy if r else None,
            "hosts": sorted(self.hosts) or sorted(r.hosts if r else {}),
            "budget": r.budget if r else None,
            "status": r.status if r else "no result",
            "verdict": (r.verdict if r and r.verdict else None) or "no result (interrupted or failed)",
            "verified_change_pct": round(v.change_pct, 2) if v is not None else None,
            "significant": bool(v is not None and v.significant),
            "success": bool(r is not None and r.succeeded),
        }


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _jsonl(path: Path) -> list[dict]:
    """trials.jsonl; a line cut short by a crash is skipped, not fatal."""
    out: list[dict] = []
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
    try:
        outcome = RunResult.from_dict(result) if isinstance(result, dict) else None
    except ValueError:  # a result.json no version of tunefleet wrote: shown as no result
        outcome = None
    return RunRecord(path=p, spec=spec, plan=plan if isinstance(plan, dict) else {},
                     hosts=hosts if isinstance(hosts, dict) else {}, result=outcome,
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


# --- the index of every run, wherever its folder is ----------------------------------------------

def index_path() -> Path:
    """runs.jsonl in the user's data folder, beside the policy store (or $TUNEFLEET_HISTORY)."""
    env = os.environ.get("TUNEFLEET_HISTORY")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tunefleet" / "runs.jsonl"


def remember(path: str | os.PathLike, workload: str, result=None) -> None:
    """Note a run in the index: when its folder is made, and again with its outcome. One JSON line
    each, appended; the last line of a folder is what `tunefleet runs` shows. An index that cannot
    be written costs the history, never the run."""
    entry = {"path": str(Path(path).resolve()), "workload": workload, "time": time.time(),
             "status": "running" if result is None else result.status}
    if result is not None:
        entry["success"] = result.success
    try:
        index = index_path()
        index.parent.mkdir(parents=True, exist_ok=True)
        with open(index, "a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError:
        pass


def indexed() -> list[dict]:
    """The index's last word on every run folder, oldest first."""
    last: dict[str, dict] = {}
    for entry in _jsonl(index_path()):
        if isinstance(entry.get("path"), str):
            last.setdefault(entry["path"], {}).update(entry)
    return sorted(last.values(), key=lambda e: e.get("time", 0))


def every_run(root: str | os.PathLike = DEFAULT_ROOT) -> tuple[list[RunRecord], list[str]]:
    """The runs of the index and those in the runs folder (made before the index was, or copied
    there), each once, oldest first; and the indexed folders that are gone."""
    runs, gone = indexed_runs()
    seen = {r.path.resolve() for r in runs}
    if Path(root).is_dir():
        runs += [r for r in list_runs(root) if r.path.resolve() not in seen]
    return sorted(runs, key=lambda r: (r.started, r.path.name)), gone


def indexed_runs() -> tuple[list[RunRecord], list[str]]:
    """The indexed runs whose folders are still there (oldest first), and the folders that are gone."""
    runs, gone = [], []
    for entry in indexed():
        path = Path(entry["path"])
        if not (path / "spec.json").is_file():
            gone.append(entry["path"])
            continue
        record = load_run(path, trials=False)
        first = _first_line(path / "trials.jsonl")
        record.trials = [first] if first else []
        runs.append(record)
    return sorted(runs, key=lambda r: (r.started, r.path.name)), gone


def prune() -> list[str]:
    """Drop the index's entries whose folders are gone; returns them."""
    _, gone = indexed_runs()
    if gone:
        keep = [e for e in _jsonl(index_path()) if e.get("path") not in gone]
        write_text_atomic(index_path(), "".join(json.dumps(e) + "\n" for e in keep))
    return gone


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
