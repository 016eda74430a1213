"""Strategy benchmark on the simulated fleet: normalized regret per strategy and budget, many seeds.

The real benchmark (bench/strategies.py) runs on real hosts and cannot afford the seeds that tell
strategies apart, nor does it know the optimum. Here every run is a full ``tune()`` (baseline,
search, confirm, verification) on 3 simulated hosts (controller/learn/simfleet.py), and the regret
of the configuration the run chose is measured on the member's noiseless surface: 0 = the
optimum, 1 = the original. Seed s runs held-out member HELD_OUT + s (1000 + s) of the family with DIMS[s % 4]
knobs; "ppo trained" starts from a policy trained, one run after the other through the policy
store, on members 0 .. train-1 of the same knob count (never on a held-out one); "ppo trained
on K" from the policy the first K of those runs left (one earlier run on the same knobs: K = 1).
The policy depends on its training run as much as on the family: --policies independent trainings
per knob count (other seeds), held-out seeds spread over them, so the intervals include that.

    .venv/bin/python bench/simbench.py --out docs/benchmarks.md          (make bench)
    .venv/bin/python bench/simbench.py --quick                           (a smoke run, seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.spec import TuningSpec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIMS = (2, 4, 6, 8)
BUDGETS = (6, 12, 24, 48)
SNAPSHOTS = (1, 4)        # "ppo trained on K": the policy after the first K training runs
HELD_OUT = 1000           # held-out members are HELD_OUT + seed; training members are 0 .. train-1 (train <= HELD_OUT)
TRAIN_SEED = 500          # training run i of policy r uses seed TRAIN_SEED + 1000 r + i
# label -> (strategy, expert priors, policy: "none" cold, "trained" from the family's policy)
CELLS = {
    "random": ("random", False, None),
    "bo": ("bo", False, None),
    "ppo cold": ("ppo", False, "none"),
    "ppo trained": ("ppo", False, "trained"),
    "ppo trained on 1": ("ppo", False, "trained-1"),
    "ppo trained on 4": ("ppo", False, "trained-4"),
    "random + priors": ("random", True, None),
    "bo + priors": ("bo", True, None),
    "ppo cold + priors": ("ppo", True, "none"),
    "ppo trained + priors": ("ppo", True, "trained"),
    "auto with a 4-run store": ("auto", False, "trained-4"),
    "auto with a 12-run store": ("auto", False, "trained"),
}


def expert_priors(m) -> list[dict]:
    """What a tuning expert tries on a busy web server without knowing its load: generous queues
    and buffers, short FIN timeout, the choices every guide recommends (the same for every member)."""
    full = {"net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192,
            "net.ipv4.tcp_rmem": "4096 131072 33554432", "net.ipv4.tcp_wmem": "4096 16384 33554432",
            "net.ipv4.tcp_fin_timeout": 15, "net.core.netdev_max_backlog": 16384,
            "net.ipv4.tcp_slow_start_after_idle": "0", "net.ipv4.tcp_tw_reuse": "1"}
    big = {**full, "net.core.somaxconn": 65535, "net.ipv4.tcp_max_syn_backlog": 65535,
           "net.ipv4.tcp_rmem": "4096 131072 134217728", "net.ipv4.tcp_wmem": "4096 16384 134217728"}
    names = [k.param for k in m.knobs]
    return [{"values": {n: p[n] for n in names}, "reason": why} for p, why in (
        (full, "accept queue 8192 and 32 MB buffers: the usual advice for a busy web server"),
        (big, "the largest accept queue and 128 MB buffers: when the load is unknown, err on the large side"))]


def tune_sim(members: list, spec: TuningSpec, hosts: int, seed: int, options, folder: Path) -> tuple[dict, list[dict]]:
    """One full tune() on a simulated fleet of `hosts` hosts running `members` (sim_fleet), its run
    folder in `folder`: (result, trials). A run that ends without a successful evaluation stops as
    the tool does, the hosts on their originals: its result says so (`error`, originals chosen)."""
    from controller.errors import TunefleetError
    from controller.job import Job, JobRequest
    from controller.learn.simfleet import sim_fleet

    job = Job(JobRequest(spec, None, options, run_dir=Path(folder) / "run", remember=False),
              sim_fleet(members, hosts, seed))
    try:
        result = job.run().to_dict()  # the folder gets its result.json, as a run of the command line does
    except TunefleetError as e:
        result = {"best_config": members[0].originals, "error": e.message,
                  "evaluations": sum(1 for t in job.folder().trials() if t["phase"] == "search")}
    return result, job.folder().trials()


def sim_spec(m, action: str, priors: bool = False):
    """Member `m`'s spec with PPO's action mode, and with the expert priors when asked."""
    from controller.spec import TuningSpec

    data = {**m.spec_dict(), "training_config": {"action": action}}
    if priors:
        data["initial_candidates"] = expert_priors(m)
    return TuningSpec.from_dict(data, f"member {m.index}")


def run_one(label: str, dims: int, index: int, budget: int, seed: int, store: str | None, hosts: int = 3,
            action: str = "config") -> dict:
    """One full tuning run of ``label`` on member ``index``; the regret of the configuration it chose."""
    from controller.learn.policystore import PolicyStore
    from controller.learn.simfleet import member
    from controller.tuner import RunOptions

    strategy, priors, policy = CELLS[label] if label in CELLS else (label, False, None)
    m = member(index, dims)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tunefleet-sim-") as tmp:
        if policy and policy.startswith("trained"):  # a copy: what this run saves must not reach the next run
            assert store is not None  # a trained cell names its store
            shutil.copytree(store + policy[len("trained"):], Path(tmp) / "policies")
        options = RunOptions(strategy=strategy, budget=budget, seed=seed, verify_repeats=2,
                             policy="none" if policy == "none" else None,
                             policy_store=PolicyStore(Path(tmp) / "policies"))
        result, _ = tune_sim([m], sim_spec(m, action, priors), hosts, seed, options, Path(tmp))
    return {"label": label, "dims": dims, "member": index, "budget": budget, "seed": seed,
            "regret": round(m.regret(result["best_config"]), 5), "ratio": round(m.ratio, 2),
            "evaluations": result["evaluations"], "error": result.get("error"),
            "strategy": result.get("strategy"), "seconds": round(time.monotonic() - started, 2),
            "from_policy": bool((result.get("policy") or {}).get("started_from"))}


def train(dims: int, members: int, budget: int, store: str, first_seed: int = TRAIN_SEED, action: str = "config",
          per_run: int = 1) -> dict:
    """PPO on members 0 .. members-1, one run after the other, each starting from the last policy;
    run r uses seed first_seed + r (PPO's and the simulated hosts' noise). ``per_run`` > 1: each run
    is a fleet of that many hosts, each a different member (each update then learns from several
    members at once), with ``budget`` evaluations per member; 1: three hosts of one member. A run
    that ends without a successful evaluation has stored the policy it trained all the same."""
    from controller.learn.policystore import PolicyStore
    from controller.learn.simfleet import member
    from controller.tuner import RunOptions

    started = time.monotonic()
    regrets = []
    for r in range(-(-members // per_run)):
        group = [member(i, dims) for i in range(r * per_run, min(members, (r + 1) * per_run))]
        options = RunOptions(strategy="ppo", budget=budget * len(group), seed=first_seed + r, verify_repeats=2,
                             policy_store=PolicyStore(store))
        with tempfile.TemporaryDirectory(prefix="tunefleet-sim-") as tmp:
            result, _ = tune_sim(group, sim_spec(group[0], action), max(3, len(group)), first_seed + r, options,
                                 Path(tmp))
        regrets.append(round(sum(m.regret(result["best_config"]) for m in group) / len(group), 4))
        if r + 1 in SNAPSHOTS:  # the store as the first r + 1 runs leave it
            shutil.copytree(store, f"{store}-{r + 1}")
    return {"dims": dims, "members": members, "per_run": per_run, "budget": budget, "first_seed": first_seed,
            "regrets": regrets, "seconds": round(time.monotonic() - started, 1)}


def probe(dims: int, store: str, action: str = "config", members: int = 40, draws: int = 20) -> dict:
    """Does the transferred policy follow the expert rule "listen overflows while the accept queue is
    short: raise it"? Over held-out members, configurations drawn uniformly whose queue is shorter
    than the member's burst (so the benchmark overflows), observed as the policy sees them (as the
    point its move starts from, or its last configuration) with the metric features the member
    emits there (relative to its baseline): how often the policy's deterministic next configuration
    has a longer queue, and how often with the overflow and drop features replaced by "none" (-1).
    Every original in the family overflows, so a relative feature near 0 means "still overflowing"."""
    import numpy as np
    from stable_baselines3 import PPO

    from controller.learn import features
    from controller.learn.env import move_point, observation
    from controller.learn.policystore import PolicyStore
    from controller.learn.simfleet import _int, member

    ps = PolicyStore(store)
    spec = member(HELD_OUT, dims).spec()  # a held-out workload name: the store's newest policy, as a run finds it
    entry = ps.find(spec, "", action)
    assert entry is not None  # probe() runs after training stored the family's policy
    model = PPO.load(str(entry.path(ps.root)), device="cpu")
    rng = np.random.default_rng(0)
    overflow = [spec.action_dim + features.NAMES.index(n)
                for n in ("tcp_listen_overflows.sum", "tcp_listen_drops.sum")]

    def queue(values):
        return min(_int(values["net.core.somaxconn"]), 2 * _int(values["net.ipv4.tcp_max_syn_backlog"]))

    def proposed(obs, unit):
        a = model.predict(obs, deterministic=True)[0]
        point = move_point(unit, a) if action == "move" else a
        return queue(spec.to_values(point))

    seen = raised = raised_blind = 0
    for index in range(HELD_OUT, HELD_OUT + members):
        m = member(index, dims)
        f0 = m.true_perf(m.originals)
        base = features.aggregate([], m.metrics(m.originals, f0, rng))
        for _ in range(draws):
            unit = rng.uniform(-1.0, 1.0, spec.action_dim)
            values = spec.to_values(unit)
            if queue(values) >= m.burst or m.failure(values):
                continue
            unit = spec.to_unit(values)
            perf = m.true_perf(values)
            named = features.relative(features.aggregate([], m.metrics(values, perf, rng)), base)
            obs = observation(unit, named, float(np.log(perf / f0)))
            blind = obs.copy()
            blind[overflow] = -1.0
            seen += 1
            raised += proposed(obs, unit) > queue(values)
            raised_blind += proposed(blind, unit) > queue(values)
    start = observation(spec.to_unit(member(HELD_OUT, dims).originals), {}, 0.0)
    return {"dims": dims, "members": members, "overflowing_steps": seen, "raised": round(raised / seen, 3),
            "raised_without_overflows": round(raised_blind / seen, 3),
            "action_at_originals": [round(float(x), 3) for x in model.predict(start, deterministic=True)[0]]}


def _init_worker() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def collect(args) -> dict:
    labels = args.cells.split(",")
    budgets = [int(b) for b in args.budgets.split(",")]
    dims = [int(d) for d in args.dims.split(",")]
    started = time.monotonic()
    # args.policies independent trainings per knob count: seed s starts from policy (s // len(dims)) % policies,
    # so the intervals include how much the trained policy depends on its own training run
    trainings = [(d, r) for d in dims for r in range(args.policies)]
    stores = {t: tempfile.mkdtemp(prefix=f"tunefleet-sim-policies-{t[0]}-{t[1]}-") for t in trainings}

    def store_of(s: int) -> str:
        return stores[(dims[s % len(dims)], (s // len(dims)) % args.policies)]

    data: dict[str, Any] = {"command": ("bench/simbench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])).strip(),
            "settings": {"cells": labels, "budgets": budgets, "dims": dims, "seeds": args.seeds, "hosts": 3,
                         "train_members": args.train, "train_budget": args.train_budget,
                         "train_per_run": args.train_per_run,
                         "policies": args.policies, "ppo_action": args.ppo_action},
            "training": [], "runs": [], "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    with ProcessPoolExecutor(args.jobs, initializer=_init_worker) as pool:
        if any(str(CELLS.get(label, (None, None, None))[2]).startswith("trained") for label in labels):
            data["training"] = list(pool.map(train, *zip(*[(d, args.train, args.train_budget, stores[(d, r)],
                                                             TRAIN_SEED + 1000 * r, args.ppo_action, args.train_per_run)
                                                            for d, r in trainings])))
            data["probes"] = list(pool.map(probe, dims, [stores[(d, 0)] for d in dims], [args.ppo_action] * len(dims)))
        data["training_minutes"] = round((time.monotonic() - started) / 60.0, 2)
        jobs = [(label, dims[s % len(dims)], HELD_OUT + s, b, s, store_of(s), 3, args.ppo_action)
                for s in range(args.seeds) for b in budgets for label in labels]
        data["runs"] = list(pool.map(run_one, *zip(*jobs), chunksize=4))
    for path in stores.values():  # the trained policies and their snapshots
        for folder in (path, *(f"{path}-{k}" for k in SNAPSHOTS)):
            shutil.rmtree(folder, ignore_errors=True)
    data["minutes"] = round((time.monotonic() - started) / 60.0, 2)
    return data


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="update the simulated-fleet section of this page")
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    p.add_argument("--dims", default=",".join(map(str, DIMS)), help="knob counts; seed s uses dims[s %% len]")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--train", type=int, default=192, help="family members the transferred policy is trained on")
    p.add_argument("--train-budget", type=int, default=48, help="evaluations per training run")
    p.add_argument("--policies", type=int, default=3, help="independent trainings per knob count")
    p.add_argument("--train-per-run", type=int, default=16,
                   help="members per training run (a fleet of different members; 1: three hosts of one)")
    p.add_argument("--ppo-action", choices=("move", "config"), default="config",
                   help="how PPO's actions are read (training_config action, controller/learn/env.py)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes")
    p.add_argument("--quick", action="store_true", help="a smoke run: random and bo, 6 seeds, 4 knobs, budget 24")
    p.add_argument("--from-json", type=Path, default=None, help="rebuild the section from saved results")
    args = p.parse_args(argv)
    if args.train > HELD_OUT:  # the transferred policy must not have seen the members it is judged on
        p.error(f"--train {args.train}: training members 0 .. {args.train - 1} would include held-out members "
                f"from {HELD_OUT} on")
    if args.quick:
        args.cells, args.budgets, args.seeds, args.dims = "random,bo", "24", 6, "4"
    return args


def _dump(data: dict) -> str:
    """The results as JSON with one run per line: readable, and small diffs when rerun."""
    rest = json.dumps({k: v for k, v in data.items() if k != "runs"}, indent=1)
    runs = ",\n".join("  " + json.dumps(r) for r in data["runs"])
    return rest[:-2] + ',\n "runs": [\n' + runs + "\n ]\n}\n"


def main(argv: list[str] | None = None) -> int:
    from bench.simreport import summarize, write_section

    args = parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        data = collect(args)
    table = summarize(data)
    for label, row in table["cells"].items():
        print(f"{label:18s} " + "  ".join(f"{b}: {c['mean']:.3f} [{c['low']:.3f}, {c['high']:.3f}]"
                                          for b, c in row.items()), flush=True)
    print(f"{data['minutes']} minutes")
    if args.out is not None:
        json_path = args.out.with_name(args.out.stem + "-sim.json")
        if not args.from_json:
            json_path.write_text(_dump(data))
        write_section(data, table, args.out, json_path, HELD_OUT)
        print(f"wrote {args.out} (section simulated)" + ("" if args.from_json else f" and {json_path}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
