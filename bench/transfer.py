"""Transfer where it pays: a policy trained on a workload, used for that workload on a new host.

A user tunes one workload on many similar hosts. Here the workload is the loopback stream against
tcp_rmem/tcp_wmem (bench/workloads.py STREAM: a real signal, about a second per evaluation):

1. train   PPO from nothing on h1 and h2, which start from small buffers (A), for --train
           evaluations; the run stores its policy (a fresh policy store of this benchmark's own).
2. level   on h3, which starts from other small buffers (B: another host, as another distribution
           or size would give), a long bo search (--reference-budget) and its verification: the best
           known configuration there and its verified median; the level a run must reach to have
           found it is --level (0.9) of that median (single samples of this stream are noisy, and
           the lower end of the median's 95% interval is too low a bar to tell the arms apart).
3. arms    on h3 from B, --seeds runs of each, --budget evaluations: ppo starting from the stored
           policy, bo from nothing, and bo with the workload's expert prior evaluated first. For each
           run: the first search evaluation whose throughput reaches the level (evaluations needed).

    .venv/bin/python bench/transfer.py --hosts inventory/local.yml --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sections import publish  # noqa: E402
from bench.workloads import STREAM  # noqa: E402

SECTION = "transfer"
START_A = dict(STREAM.start)
START_B = {"net.ipv4.tcp_rmem": "4096 8192 65536", "net.ipv4.tcp_wmem": "4096 8192 16384"}
PRIOR = {"values": {"net.ipv4.tcp_rmem": "4096 262144 33554432", "net.ipv4.tcp_wmem": "4096 262144 8388608"},
         "reason": "the largest buffers the ranges allow: the window never limits a bulk transfer"}


def spec(priors: bool):
    from controller.spec import TuningSpec

    data = {**STREAM.spec, "training_config": {"algorithm": "PPO"}}
    if priors:
        data["initial_candidates"] = [PRIOR]
    return TuningSpec.from_dict(data, "transfer: stream")


def run(args, limit: str, start: dict, strategy: str, budget: int, seed: int, *, priors=False, policy=None,
        confirm_top=3, verify_repeats=4, folder: Path) -> tuple[dict, list[dict]]:
    """One tuning run through the run API on the hosts of `limit`, started from `start`."""
    from controller.fleet.fleet import ConnectOptions, Fleet
    from controller.fleet.inventory import load_inventory
    from controller.job import Job, JobRequest
    from controller.learn.policystore import PolicyStore
    from controller.tuner import RunOptions

    the_spec = spec(priors)
    fleet = Fleet.connect(load_inventory(args.hosts).select(limit), ConnectOptions(knobs=tuple(the_spec.knob_names)))
    try:
        if fleet.failed:
            raise RuntimeError(f"hosts unreachable: {fleet.failed}")
        applied = fleet.map(lambda h: h.request("apply", {"values": start}))  # journaled: restored at the end
        bad = {n: o.error for n, o in applied.items() if not o.ok or o.value.get("refused")}
        if bad:
            raise RuntimeError(f"cannot set the starting values: {bad}")
        options = RunOptions(strategy=strategy, budget=budget, seed=seed, policy=policy, confirm_top=confirm_top,
                             verify_repeats=verify_repeats, policy_store=PolicyStore(args.store))
        job = Job(JobRequest(the_spec, None, options, run_dir=folder, remember=False), fleet)
        result = job.run().to_dict()
        return result, job.folder().trials()
    finally:
        fleet.close()


def searched(trials: list[dict]) -> list[float | None]:
    """Each search evaluation's throughput, in order (None: it failed)."""
    return [t["raw"] if t["error"] is None else None for t in trials if t["phase"] == "search"]


def needed(search: list[float | None], level: float) -> int | None:
    """The number of the first search evaluation (1-based) whose throughput reached the level."""
    return next((i + 1 for i, raw in enumerate(search) if raw is not None and raw >= level), None)


def measure(args) -> dict:
    from controller.learn import stats

    work = Path(args.runs or tempfile.mkdtemp(prefix="tunefleet-transfer-"))
    started = time.monotonic()
    print("train: ppo on h1,h2 ...", flush=True)
    trained, _ = run(args, "h1,h2", START_A, "ppo", args.train, 0, policy="none", confirm_top=0, verify_repeats=2,
                     folder=work / "train")
    policy = (trained.get("policy") or {}).get("saved")
    print(f"  policy {policy} ({trained['evaluations']} evaluations)", flush=True)
    print("level: bo on h3 ...", flush=True)
    ref, ref_trials = run(args, "h3", START_B, "bo", args.reference_budget, 0, confirm_top=5, verify_repeats=6,
                          folder=work / "reference")
    best = [t["raw"] for t in ref_trials if t["phase"] == "verify" and t["label"] == "B" and t["error"] is None]
    median, low, high = stats.median_interval({"h3": best}, seed=0)
    target = args.level * median
    print(f"  best known {ref['best_config']}: median {median:.0f} MB/s, 95% CI {low:.0f} to {high:.0f}; "
          f"level {target:.0f}", flush=True)
    # arm -> (strategy, the expert prior first, the policy), and the folder its runs go to
    arms: dict[str, tuple[str, bool, str | None, str]] = {
        "ppo (stored policy)": ("ppo", False, policy, "ppo"), "bo cold": ("bo", False, None, "bo-cold"),
        "bo + expert prior": ("bo", True, None, "bo-prior")}
    rows: dict[str, list[dict]] = {name: [] for name in arms}
    for seed in range(1, args.seeds + 1):
        for name, (strategy, priors, stored, where) in arms.items():
            result, trials = run(args, "h3", START_B, strategy, args.budget, seed, priors=priors, policy=stored,
                                 confirm_top=0, verify_repeats=2, folder=work / f"{where}-{seed}")
            search = searched(trials)
            started_from = (result.get("policy") or {}).get("started_from")
            rows[name].append({"seed": seed, "needed": needed(search, target), "search": search,
                               "baseline": trials[0]["raw"], "policy": started_from})
            print(f"  {name} seed {seed}: {rows[name][-1]['needed']}", flush=True)
    return {"level": {"median": median, "low": low, "high": high, "fraction": args.level, "target": target,
                      "config": ref["best_config"]},
            "train_evaluations": trained["evaluations"], "policy": policy, "reference_budget": args.reference_budget,
            "budget": args.budget, "seeds": args.seeds, "arms": rows, "minutes": (time.monotonic() - started) / 60,
            "command": ".venv/bin/python bench/transfer.py --hosts inventory/local.yml --out docs/benchmarks.md"}


def costly(rows: list[dict], median: float) -> str:
    """Search evaluations (failed ones included) below half the best known median, of all."""
    samples = [x for r in rows for x in r["search"]]
    return f"{sum(1 for x in samples if x is None or x < median / 2)} of {len(samples)}"


def section(data: dict) -> str:
    level = data["level"]
    lines = ["## Transfer: a stored policy on a new host", "",
             f"PPO trained on h1 and h2 ({data['train_evaluations']} evaluations of the loopback stream, both starting "
             f"from small buffers), then used on h3, which starts from other small buffers. The level to reach is "
             f"{100 * level['fraction']:.0f}% of the best known configuration's verified median on h3: "
             f"{level['target']:.0f} MB/s (median {level['median']:.0f}, 95% CI {level['low']:.0f} to "
             f"{level['high']:.0f}; from a bo search of its own, {data.get('reference_budget', 48)} evaluations, "
             f"and its verification). Evaluations needed: the first search evaluation at or above it, of "
             f"{data['budget']}; `-`: not within the budget. Best seen: the highest single search sample, as a "
             "share of the best known median (median over the seeds). Costly: the search evaluations below half the "
             "best known median, all seeds together (each one a stretch of a host running far below what it can).",
             "",
             "| arm | " + " | ".join(f"seed {r['seed']}" for r in next(iter(data["arms"].values()))) +
             " | median | within 6 | best seen | costly |",
             "|---|" + "---|" * (data["seeds"] + 4)]
    for name, rows in data["arms"].items():
        got = [r["needed"] for r in rows]
        reached = [g for g in got if g is not None]
        median = statistics.median([g if g is not None else data["budget"] + 1 for g in got])
        best = statistics.median(max((x for x in r["search"] if x is not None), default=0.0) for r in rows)
        lines.append(f"| {name} | " + " | ".join("-" if g is None else str(g) for g in got)
                     + f" | {median:g} | {sum(1 for g in reached if g <= 6)} of {len(got)} | "
                     f"{100 * best / level['median']:.0f}% | {costly(rows, level['median'])} |")
    lines += ["", f"Command: `{data['command']}` ({data['minutes']:.0f} minutes; raw results in "
                  "`docs/benchmarks-transfer.json`)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=Path, default=ROOT / "inventory" / "local.yml")
    parser.add_argument("--train", type=int, default=240, help="PPO's training evaluations on h1 and h2")
    parser.add_argument("--reference-budget", type=int, default=48)
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--level", type=float, default=0.9, help="the share of the best known median to reach")
    parser.add_argument("--store", type=Path, default=None, help="the policy store (default: a fresh temp folder)")
    parser.add_argument("--runs", type=Path, default=None, help="keep the run folders here")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks-transfer.json")
    parser.add_argument("--from-json", action="store_true")
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(args.json.read_text())
    else:
        args.store = args.store or Path(tempfile.mkdtemp(prefix="tunefleet-policies-"))
        data = measure(args)
    publish(args.out, SECTION, section(data), None if args.from_json else data, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
