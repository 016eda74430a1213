"""Real workloads against the expert profiles an administrator would apply instead (make bench-real).

For every built-in workload on real services (PostgreSQL, nginx, Redis, a long-distance link,
buffered file writes, and the CPU control), one `tunefleet run` on the local fleet: bo at
budget 24 from nothing (no policy store), with every matching expert profile compared in the
same interleaved verification (`--compare auto`): the original settings, tunefleet's winner and
each profile, run by turns on every host. Kernel-wide knobs need a host of their own on this
machine (its hosts are namespaces of one kernel), so those workloads run on h1 alone; the link
needs a pair (h1 -> h2). The raw results go to a JSON file beside the page, from which the
section is rebuilt without the fleet (--from-json).

    .venv/bin/python bench/real.py --hosts inventory/local.yml --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sections import publish  # noqa: E402

# workload -> the hosts it runs on here (None: every host of the inventory)
PLACES = {
    "pg-oltp": "h1", "pg-select": "h1", "pg-connect": None, "nginx": None, "nginx-keepalive": "h1",
    "redis": "h1", "link": "h1,h2", "fileio": "h1", "cpu": "h1",
}
SECTION = "real-workloads"


def reused(key: str, run_dir: Path) -> dict | None:
    """A finished run of this workload from an earlier invocation (--reuse): its result.json, and the
    minutes from its spec (written when the run starts) to its result (written when it ends)."""
    result, spec = run_dir / "result.json", run_dir / "spec.json"
    if not result.is_file() or not spec.is_file():
        return None
    minutes = (result.stat().st_mtime - spec.stat().st_mtime) / 60
    return {"key": key, "minutes": round(minutes, 1), "hosts": PLACES[key] or "all", "reused": True,
            "result": json.loads(result.read_text())}


def run_workload(key: str, args, run_root: Path) -> dict:
    """One run; its result.json with the minutes it took."""
    run_dir = run_root / key
    if args.reuse and (earlier := reused(key, run_dir)) is not None:
        return earlier
    if run_dir.exists():  # an earlier invocation's folder, unfinished or not to be reused: this run replaces it
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "controller.cli", "run", key, "--hosts", str(args.hosts), "--yes", "--json",
           "--strategy", "bo", "--policy", "none", "--budget", str(args.budget), "--seed", str(args.seed),
           "--verify-repeats", str(args.verify_repeats), "--compare", "auto", "--run-dir", str(run_dir)]
    limit = PLACES[key]
    if limit:
        cmd += ["--limit", limit]
    started = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    minutes = (time.monotonic() - started) / 60
    if p.returncode != 0:
        tail = p.stderr.strip().splitlines()[-3:]
        return {"key": key, "error": " / ".join(tail), "minutes": round(minutes, 1), "command": cmd}
    result = json.loads(p.stdout)
    return {"key": key, "minutes": round(minutes, 1), "hosts": PLACES[key] or "all", "result": result,
            "command": cmd}


def _pct(c: dict | None) -> str:
    if not c:
        return "-"
    star = "" if c["significant"] else " (n.s.)"
    return f"{c['change_pct']:+.1f}% [{c['ci_low_pct']:+.1f}, {c['ci_high_pct']:+.1f}]{star}"


def _versus(c: dict | None) -> str:
    if not c:
        return "-"
    if not c["significant"]:
        return "tie"
    return "tunefleet better" if c["change_pct"] > 0 else "profile better"


def _observed(result: dict, arm: str) -> str:
    values = (result.get("observed") or {}).get(arm) or {}
    return ", ".join(f"{m.replace('_ms', '')} {v:.3g}" + (" ms" if m.endswith("_ms") else "")
                     for m, v in values.items()) or "-"


def rows(entry: dict) -> list[str]:
    r = entry["result"]
    key = entry["key"]
    first = f"| {key} ({entry['hosts']}, {entry['minutes']} min) | "
    out = [first + f"original | - | - | {_observed(r, 'original')} | |",
           f"| | tunefleet (bo, {r['evaluations']}) | {_values(r['best_config'])} | {_pct(r['verification'])} | "
           f"{_observed(r, 'best')} | |"]
    for name, arm in (r.get("arms") or {}).items():
        out.append(f"| | {name} | {_values(arm['values'])} | {_pct(arm['verification'])} | "
                   f"{_observed(r, name)} | {_versus(arm.get('best_vs'))}: {_pct(arm.get('best_vs'))} |")
    return out


def _values(values) -> str:
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        return "(per host)"
    return "<br>".join(f"{k.split('.', 1)[1]}={v}" for k, v in values.items()) or "-"


def _gain(c: dict | None) -> bool:
    return bool(c and c["significant"] and c["change_pct"] > 0)


def _link_rate(entry: dict) -> float:
    """The emulated link's rate: the run's spec.json says it, else the built-in workload's."""
    from controller.strategist.workloads import LINK

    spec = Path(entry["result"].get("run_dir") or "/nonexistent") / "spec.json"
    link = (json.loads(spec.read_text()).get("peer") or {}).get("link") if spec.is_file() else None
    return float((link or LINK)["rate_mbit"])


def findings(data: dict) -> list[str]:
    """What the rows say against the targets: tunefleet against the best profile wherever any arm
    gained, the workloads where nothing could be told from noise, the profiles that cost, the
    control, and the long link's throughput against its rate."""
    out, quiet = [], []
    for entry in (e for e in data["runs"] if "error" not in e):
        r, key = entry["result"], entry["key"]
        arms = r.get("arms") or {}
        if _gain(r["verification"]) or any(_gain(a["verification"]) for a in arms.values()):
            best = max(arms.items(), key=lambda kv: kv[1]["verification"]["change_pct"], default=None)
            against = (f"; the best profile, {best[0]}, {_pct(best[1]['verification'])}: "
                       f"{_versus(best[1].get('best_vs'))}" if best else "")
            out.append(f"- **{key}**: tunefleet {_pct(r['verification'])}{against}.")
        else:
            widest = max([r["verification"]] + [a["verification"] for a in arms.values()],
                         key=lambda c: c["ci_high_pct"] - c["ci_low_pct"])
            quiet.append(f"{key} (widest interval {widest['ci_low_pct']:+.0f} to {widest['ci_high_pct']:+.0f}%)")
        for name, arm in arms.items():
            c = arm["verification"]
            if c["significant"] and c["change_pct"] < 0:
                out.append(f"- **{key}**: {name} costs {_pct(c)} against the original.")
        if r["reward_metric"] == "throughput_mbit_s" and r["verification"].get("best_median"):
            rate = _link_rate(entry)
            out.append(f"- **{key}**: the winner's verified median is {r['verification']['best_median']:.0f} Mbit/s "
                       f"on a link emulated at {rate:g} Mbit/s ({100 * r['verification']['best_median'] / rate:.0f}%;"
                       f" the original {r['verification']['baseline_median']:.0f}).")
    if quiet:
        control = any(q.startswith("cpu ") for q in quiet)
        control_says = " (cpu is the control: no knob should matter there)" if control else ""
        out.append("- No arm shows a significant gain on " + ", ".join(quiet) + control_says + ".")
    return out


def section(data: dict) -> str:
    lines = ["## Real workloads", "",
             "tunefleet at budget 24 (bo from nothing) against the original settings and the expert profiles that "
             "fit each workload, all measured in one interleaved verification per host "
             f"({data['verify_repeats']} runs of each arm per host); the change is against the original, positive "
             "is better, with its 95% CI; `n.s.`: the interval holds zero. The last column compares tunefleet's "
             "winner with each profile directly (positive: tunefleet better). Profiles apply only the sysctls "
             "these hosts can take (result.json of each run says what was left out and why).", "",
             "| workload (hosts, minutes) | arm | settings | vs original, 95% CI | also measured (median) | "
             "tunefleet vs profile |",
             "|---|---|---|---|---|---|"]
    for entry in data["runs"]:
        if "error" in entry:
            lines.append(f"| {entry['key']} | failed: {entry['error']} | | | | |")
            continue
        lines += rows(entry)
    lines += ["", "Findings, read from the table by the script:", ""] + findings(data)
    lines += ["", f"Command: `{data['command']}` ({data['minutes']:.0f} minutes in all; raw results in "
                  f"`{data['json']}`)."]
    kept = [e["key"] for e in data["runs"] if e.get("reused")]
    if kept:
        lines[-1] += (f" The runs of {', '.join(kept)} come from an earlier invocation of the same command, "
                      "kept with `--reuse` (their result.json, unchanged).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=Path, default=ROOT / "inventory" / "local.yml")
    parser.add_argument("--workloads", default=",".join(PLACES))
    parser.add_argument("--budget", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verify-repeats", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks-real.json")
    parser.add_argument("--from-json", action="store_true", help="rebuild the section from --json, no fleet")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-real")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the workloads whose run folder under --runs finished earlier (their result.json)")
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(args.json.read_text())
    else:
        keys = [k for k in args.workloads.split(",") if k]
        unknown = [k for k in keys if k not in PLACES]
        if unknown:
            parser.error(f"unknown workload(s) {', '.join(unknown)} (known: {', '.join(PLACES)})")
        runs = []
        for key in keys:
            print(f"{key} ...", flush=True)
            runs.append(run_workload(key, args, args.runs))
            again = " (reused: an earlier invocation's run)" if runs[-1].get("reused") else ""
            print(f"  {runs[-1].get('error') or runs[-1]['result']['verdict']} ({runs[-1]['minutes']} min){again}",
                  flush=True)
        data = {"runs": runs, "verify_repeats": args.verify_repeats, "minutes": sum(r["minutes"] for r in runs),
                "json": str(args.json.relative_to(ROOT)) if args.json.is_relative_to(ROOT) else str(args.json),
                "command": ".venv/bin/python bench/real.py --hosts inventory/local.yml --out docs/benchmarks.md"}
    publish(args.out, SECTION, section(data), None if args.from_json else data, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
