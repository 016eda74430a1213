"""Strategy benchmark: ppo, bo and random at equal budgets on the local fleet, several seeds.

Every run is a real tuning run (controller.tuner.tune: baseline, search, confirm, verification)
against the hosts of inventory/local.yml; nothing is simulated. Per workload, one long random
search first finds a reference configuration; then each strategy runs once per seed. The raw
results go to a JSON file next to the report, from which the report (table, plot, commands)
can be rebuilt without the fleet (--from-json).

    .venv/bin/python bench/strategies.py --out docs/benchmarks.md        (make bench)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.workloads import WORKLOADS, Workload  # noqa: E402

BUSY_RETRIES = 40      # the fleet is shared: wait for another user's agents, at most this many times
BUSY_WAIT_S = 15.0


def _connect(inventory: Path, limit: str, knobs: list[str]):
    from controller.errors import UserError
    from controller.fleet.fleet import ConnectOptions, Fleet
    from controller.fleet.inventory import load_inventory

    specs = load_inventory(inventory).select(limit)
    for _ in range(BUSY_RETRIES):
        fleet = Fleet.connect(specs, ConnectOptions(knobs=tuple(knobs)))
        if not fleet.failed:
            return fleet
        why = "; ".join(f"{n}: {e.message}" for n, e in fleet.failed.items())
        fleet.close()
        print(f"  fleet not ready ({why}); retrying in {BUSY_WAIT_S:.0f} s", flush=True)
        time.sleep(BUSY_WAIT_S)
    raise UserError(f"the fleet stayed unavailable for {BUSY_RETRIES * BUSY_WAIT_S:.0f} s")


def run_one(w: Workload, strategy: str, seed: int, budget: int, args, run_root: Path, role: str = "run") -> dict:
    """One tuning run; the fleet is closed (every knob restored) before this returns."""
    from controller.job import Job, JobRequest
    from controller.spec import TuningSpec
    from controller.tuner import RunOptions

    spec = TuningSpec.from_dict(w.spec, f"workload {w.key}")
    started = time.monotonic()
    fleet = _connect(args.inventory, args.limit, spec.knob_names)
    try:
        if w.start:  # the agent journals the true originals before this first change
            applied = fleet.map(lambda h: h.request("apply", {"values": w.start}))
            bad = {n: o.error for n, o in applied.items() if not o.ok or o.value.get("refused")}
            if bad:
                raise RuntimeError(f"cannot set the starting values: {bad}")
        options = RunOptions(strategy=strategy, budget=budget, seed=seed, verify_repeats=args.verify_repeats,
                             confirm_top=args.reference_confirm if role == "reference" else args.confirm_top)
        job = Job(JobRequest(spec, None, options, run_dir=run_root / f"{w.key}-{role}-{strategy}-{seed}"), fleet)
        result = job.run().to_dict()  # the folder gets its result.json, as a run of the command line does
        trials = job.folder().trials()
    finally:
        fleet.close()
    search = [{"host": t["host"], "reward": t["reward"], "ok": t["error"] is None, "values": t["values"]}
              for t in trials if t["phase"] == "search"]
    return {
        "workload": w.key, "strategy": strategy, "seed": seed, "budget": budget, "role": role,
        "seconds": round(time.monotonic() - started, 1),
        "search": search,
        "best_seen_pct": result["best_seen"]["change_pct"],
        "best_config": result["best_config"],
        "confirm": result.get("confirm"),
        "verification": result["verification"],
        "success": result["success"],
        "verdict": result["verdict"],
        "importance": result.get("importance"),
        "evaluations_total": result["evaluations_total"],
        "hosts": sorted(result["hosts"]),
    }


def main(argv: list[str] | None = None) -> int:
    from bench.analysis import write_report

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--inventory", type=Path, default=ROOT / "inventory" / "local.yml")
    p.add_argument("--limit", default="h1,h2,h3", help="hosts to use (inventory names)")
    p.add_argument("--workloads", default="storm,stream,null")
    p.add_argument("--strategies", default="ppo,bo,random")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=12, help="search evaluations per run, across the fleet")
    p.add_argument("--reference-budget", type=int, default=36, help="the long random search per workload")
    p.add_argument("--verify-repeats", type=int, default=4)
    p.add_argument("--confirm-top", type=int, default=3)
    p.add_argument("--reference-confirm", type=int, default=5)
    p.add_argument("--runs-dir", type=Path, default=None, help="keep every run folder here (default: a temp dir)")
    p.add_argument("--from-json", type=Path, default=None, help="rebuild the report from saved results, no fleet")
    args = p.parse_args(argv)

    data_path = args.out.with_suffix(".json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        data = collect(args, data_path)
    write_report(data, args.out)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}" + ("" if args.from_json else f" from {data_path}"))
    return 0


def collect(args, data_path: Path) -> dict:
    """Run everything; the results file is rewritten after every run, so an interruption keeps them."""
    workloads = [WORKLOADS[k] for k in args.workloads.split(",")]
    strategies = args.strategies.split(",")
    seeds = list(range(args.seeds))
    run_root = args.runs_dir or Path(tempfile.mkdtemp(prefix="tunefleet-bench-"))
    started = time.monotonic()
    data: dict[str, Any] = {
        "command": ("bench/strategies.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])).strip(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "workloads": {w.key: {"title": w.title, "spec": w.spec, "start": w.start, "null": w.null} for w in workloads},
        "runs": [],
        "minutes": 0.0,
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
    }

    def record(run: dict) -> None:
        data["runs"].append(run)
        data["minutes"] = round((time.monotonic() - started) / 60.0, 1)
        data_path.write_text(json.dumps(data, indent=1) + "\n")
        _say(run)

    for w in workloads:
        if not w.null:  # the reference: a long random search (no reference for the null workload)
            print(f"{w.key}: reference (random, budget {args.reference_budget})", flush=True)
            record(run_one(w, "random", 1000, args.reference_budget, args, run_root, role="reference"))
        for seed in seeds:
            for strategy in strategies:  # interleaved, so a slow drift of the machine hits every strategy
                print(f"{w.key}: {strategy} seed {seed} (budget {args.budget})", flush=True)
                record(run_one(w, strategy, seed, args.budget, args, run_root))
    return data


def _say(r: dict) -> None:
    v = r["verification"] or {}
    print(f"  {r['seconds']:.0f} s; best seen {r['best_seen_pct']:+.1f}%; verified "
          f"{v.get('change_pct', float('nan')):+.1f}% [{v.get('ci_low_pct', float('nan')):+.1f}, "
          f"{v.get('ci_high_pct', float('nan')):+.1f}]; claims improvement: {r['success']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
