"""Fleet scale: what the controller costs per host and per evaluation, threads and Ray side by side,
against the naive loop (bench/naive_loop.py) measured in the same run.

    .venv/bin/python bench/scale.py --hosts inventory/local.yml --sizes 1,3,16,64 [--out docs/benchmarks.md]

For every fleet size and executor:
- first evaluation: connect + deploy + hello, then one evaluation on every host;
- marginal controller cost: the slope of wall time over evaluations with `echo` as the benchmark
  (two runs of R1 and R2 rounds), minus the benchmark's own time (echo run here); per
  evaluation amortized over the hosts (the fleet's cost per evaluation) and per host;
- parallel efficiency with a fixed 1 s benchmark: T(1 host, n rounds) / T(k hosts, n rounds);
- controller CPU per evaluation (the echo runs): this process, every process it started (with Ray
  its daemons) and the host actors; resident memory per host: the growth of this process plus the
  host actors' processes, over connecting (Ray's daemons are a fixed cost, not counted per host).
Sizes larger than the inventory are skipped (bring the fleet up with HOSTS=64 PG=0 first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.fleet.executor import ThreadExecutor  # noqa: E402
from controller.fleet.fleet import ConnectOptions, Fleet  # noqa: E402
from controller.fleet.inventory import load_inventory  # noqa: E402
from controller.learn.evaluation import HostEvaluator, Recorder  # noqa: E402
from controller.learn.search import SearchContext, random_search  # noqa: E402
from controller.spec import TuningSpec  # noqa: E402
from controller.tuner import read_originals  # noqa: E402

from bench.naive_loop import naive_run  # noqa: E402
from bench.sections import update_section  # noqa: E402

ECHO = "echo x=1"
SLEEP = "sh -c 'sleep 1; echo x=1'"
TICK = os.sysconf("SC_CLK_TCK")


def spec_for(command: str) -> TuningSpec:
    return TuningSpec.from_dict({
        "workload_name": "scale", "reward_metric": "x", "reward_pattern": r"x=(\S+)", "benchmark_command": command,
        "benchmark_timeout": 30, "action_space": [{"param": "net.ipv4.tcp_fin_timeout", "min": 10, "max": 60}],
    })


# --- processes: this one, its descendants, and the Ray actors -------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _tree(roots: list[int]) -> set[int]:
    seen, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += _children(pid)
    return seen


def _cpu_rss(pids: set[int]) -> tuple[float, float]:
    """CPU seconds and resident MiB summed over pids (those still alive)."""
    cpu = rss = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK
            with open(f"/proc/{pid}/status") as f:
                rss += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
        except (OSError, StopIteration):
            pass
    return cpu, rss


def _controller(fleet: Fleet | None) -> set[int]:
    """For CPU: this process, all it started (with a local Ray, Ray's daemons) and the host actors."""
    return _tree([os.getpid(), *_actors(fleet)])


def _per_host_memory(fleet: Fleet) -> set[int]:
    """For memory: this process and the host actors' process trees; Ray's daemons are a fixed cost."""
    return {os.getpid(), *_tree(_actors(fleet))}


def _actors(fleet: Fleet | None) -> list[int]:
    if fleet is None:
        return []
    return [h.facts["worker"]["pid"] for h in fleet.hosts.values() if h.facts.get("worker")]


# --- one executor at one size -----------------------------------------------------------------------

def _rounds(fleet: Fleet, spec: TuningSpec, rounds: int) -> float:
    recorder = Recorder()
    evaluators = {n: HostEvaluator(h, spec, recorder) for n, h in fleet.hosts.items()}
    executor = ThreadExecutor(len(evaluators))
    ctx = SearchContext(spec=spec, evaluators=evaluators, originals=read_originals(fleet, spec.knob_names),
                        baseline_metrics={}, executor=executor, recorder=recorder,
                        budget=rounds * len(evaluators), log=lambda m: None)
    try:
        started = time.monotonic()
        random_search(ctx)
        wall = time.monotonic() - started
    finally:
        executor.shutdown()
    bad = [t.error for t in recorder.trials if not t.ok]
    if bad:
        sys.exit(f"evaluations failed: {bad[:3]}")
    return wall


def echo_ms(times: int = 50) -> float:
    """The benchmark's own time: `echo` started and reaped on this machine (the fleet's hosts are
    namespaces on its kernel). What an evaluation costs beyond this is the tuner's."""
    walls = []
    for _ in range(times):
        started = time.perf_counter()
        subprocess.run(ECHO.split(), stdout=subprocess.DEVNULL, check=True)
        walls.append((time.perf_counter() - started) * 1000)
    return statistics.median(walls)


def measure(specs: list, workers: str, r1: int, r2: int, sleep_rounds: int, own_ms: float) -> dict:
    n = len(specs)
    spec = spec_for(ECHO)
    _, rss0 = _cpu_rss({os.getpid()})
    t0 = time.monotonic()
    fleet = Fleet.connect(specs, ConnectOptions(knobs=tuple(spec.knob_names), workers=workers))
    connect_s = time.monotonic() - t0
    if fleet.failed:
        sys.exit(f"hosts failed: {fleet.failed}")
    try:
        first_s = connect_s + _rounds(fleet, spec, 1)
        pids = _controller(fleet)
        cpu1, _ = _cpu_rss(pids)
        w1 = _rounds(fleet, spec, r1)
        w2 = _rounds(fleet, spec, r2)
        cpu2, _ = _cpu_rss(pids)
        _, rss = _cpu_rss(_per_host_memory(fleet))
        slope_ms = (w2 - w1) / ((r2 - r1) * n) * 1000  # wall per evaluation, the fleet's evaluations together
        sleep_wall = _rounds(fleet, spec_for(SLEEP), sleep_rounds)
    finally:
        fleet.close()
    return {"hosts": n, "workers": workers, "connect_s": connect_s, "first_s": first_s, "slope_ms": slope_ms,
            "marginal_ms": slope_ms - own_ms / n, "per_host_ms": slope_ms * n - own_ms, "own_ms": own_ms,
            "cpu_per_host_s": (cpu2 - cpu1) / n, "cpu_per_eval_ms": (cpu2 - cpu1) / ((r1 + r2) * n) * 1000,
            "rss_per_host_mb": (rss - rss0) / n, "sleep_wall": sleep_wall}


def naive(specs: list, r1: int, r2: int, own_ms: float) -> dict:
    n = len(specs)
    w1, w2 = naive_run(specs, r1, ECHO), naive_run(specs, r2, ECHO)
    slope_ms = (w2 - w1) / ((r2 - r1) * n) * 1000
    return {"hosts": n, "slope_ms": slope_ms, "marginal_ms": slope_ms - own_ms / n, "per_host_ms": slope_ms * n - own_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="inventory/local.yml")
    ap.add_argument("--sizes", default="1,3,16,64")
    ap.add_argument("--workers", default="threads,ray")
    ap.add_argument("--rounds", default="4,14", help="R1,R2: echo rounds of the two runs the slope is taken from")
    ap.add_argument("--sleep-rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, help="benchmarks page whose 'scale' section to rewrite")
    args = ap.parse_args()
    r1, r2 = (int(x) for x in args.rounds.split(","))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import paramiko  # noqa: F401  (imported once up front: its import is no host's memory)

    ray_start_s = _start_ray() if "ray" in args.workers.split(",") else None
    own_ms = echo_ms()
    print(f"`{ECHO}` itself: {own_ms:.2f} ms", flush=True)
    everyone = list(load_inventory(args.hosts).hosts.values())
    sizes = [k for k in (int(s) for s in args.sizes.split(",")) if k <= len(everyone)]
    rows, anchors = [], []
    for k in sizes:
        for workers in args.workers.split(","):
            row = measure(everyone[:k], workers, r1, r2, args.sleep_rounds, own_ms)
            rows.append(row)
            print(_line(row), flush=True)
        anchors.append(naive(everyone[:k], r1, r2, own_ms))
        print(f"naive loop, {k} host(s): {anchors[-1]['marginal_ms']:.1f} ms per evaluation amortized, "
              f"{anchors[-1]['per_host_ms']:.1f} ms per evaluation per host", flush=True)
    for row in rows:
        one = next(r for r in rows if r["hosts"] == 1 and r["workers"] == row["workers"])
        row["efficiency"] = one["sleep_wall"] / row["sleep_wall"]
    if args.out:
        update_section(args.out, "scale", _section(rows, anchors, args, sizes, ray_start_s, own_ms))


def _start_ray() -> float:
    """A local Ray, started once before any measurement: a fixed cost, reported on its own."""
    from controller.fleet.ray_executor import init_ray

    started = time.monotonic()
    init_ray()
    return time.monotonic() - started


def _line(r: dict) -> str:
    return (f"{r['workers']:7} {r['hosts']:3} hosts: connect {r['connect_s']:.2f} s, first evaluation {r['first_s']:.2f} s, "
            f"marginal {r['marginal_ms']:.2f} ms/eval amortized ({r['per_host_ms']:.1f} ms per host), cpu {r['cpu_per_eval_ms']:.2f} ms/eval, rss {r['rss_per_host_mb']:.1f} MiB/host, "
            f"1 s benchmark rounds in {r['sleep_wall']:.2f} s")


def _section(rows: list[dict], anchors: list[dict], args, sizes: list[int], ray_start_s: float | None,
             own_ms: float) -> str:
    cmd = (f".venv/bin/python bench/scale.py --hosts {args.hosts} --sizes {','.join(map(str, sizes))} "
           f"--rounds {args.rounds} --sleep-rounds {args.sleep_rounds} --out {args.out}")
    table = ["| hosts | workers | connect + deploy + hello | first evaluation done | wall per evaluation, echo "
             "included (amortized) | marginal cost per evaluation (amortized) | per evaluation per host | "
             "controller CPU per evaluation | controller CPU per host | RSS per "
             "host | parallel efficiency (1 s benchmark) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['hosts']} | {r['workers']} | {r['connect_s']:.2f} s | {r['first_s']:.2f} s | "
                     f"{r['slope_ms']:.2f} ms | {r['marginal_ms']:.2f} ms | {r['per_host_ms']:.1f} ms | {r['cpu_per_eval_ms']:.2f} ms | "
                     f"{r['cpu_per_host_s']:.2f} s | "
                     f"{r['rss_per_host_mb']:.1f} MiB | {r['efficiency']:.2f} |")
    naive_rows = [f"| {a['hosts']} | naive loop (paramiko) | | | {a['slope_ms']:.2f} ms | {a['marginal_ms']:.2f} ms | {a['per_host_ms']:.1f} ms "
                  f"| | | | |" for a in anchors]
    return "\n".join([
        "## Fleet scale: threads, Ray and the naive loop",
        "",
        f"Measured on {time.strftime('%Y-%m-%d')} on the local fleet ({os.cpu_count()} cores shared by every host "
        "and the controller), local Ray (one actor process per host"
        + (f"; starting Ray itself took {ray_start_s:.1f} s once, before the first row" if ray_start_s else "")
        + "):",
        "",
        "```",
        cmd,
        "```",
        "",
        *table,
        *naive_rows,
        "",
        f"Marginal cost: the slope of wall time between {args.rounds.replace(',', ' and ')} rounds of `{ECHO}` "
        f"on every host, minus the benchmark's own time ({own_ms:.1f} ms: `{ECHO}` started and reaped on this "
        "machine, divided by the hosts running it side by side; started from this Python process it costs more "
        "than from the agent's, so at 1 host the difference can come out below zero: the wall column is the slope "
        "itself); amortized = per evaluation of the "
        "fleet (hosts run side by side), per host = what one host's evaluation costs end to end. The naive loop "
        "(bench/naive_loop.py) runs the same rounds with one paramiko exec per `sysctl -w`, per benchmark and per "
        "/proc read. Controller CPU per host: over the two echo runs. Parallel efficiency: T(1 host) / T(k hosts) for the same number of rounds of `sleep 1`. "
        "RSS per host: for threads the growth of this process and its children over connecting; for Ray the "
        "driver plus every host actor's process, divided by the hosts (Ray's own daemons not counted).",
    ])


if __name__ == "__main__":
    main()
