"""Fleet scale: what the controller costs per host and per evaluation, threads and Ray side by side,
against the naive loop (bench/naive_loop.py) measured in the same run.

    .venv/bin/python bench/scale.py --hosts inventory/local-scale.yml --sizes 1,3,16,64 [--out docs/benchmarks.md]

Each --hosts fleet is measured in turn, and the table says how its route acknowledges: at once
(QUICKACK=1, the default local fleet) or after the delayed-ACK timer, as on a real network
(QUICKACK=0), which costs a client without TCP_NODELAY, like the naive loop's, ~40 ms per exec.

For every fleet size and executor:
- first evaluation: connect + deploy + hello, then one evaluation on every host;
- marginal controller cost: the slope of wall time over evaluations with `echo` as the benchmark
  (two runs of R1 and R2 rounds, the median of --repeats such pairs), minus the benchmark's own time (echo run
  here); per evaluation amortized over the hosts (the fleet's cost per evaluation) and per host;
- parallel efficiency with a fixed 1 s benchmark: T(1 host, n rounds) / T(k hosts, n rounds);
- controller CPU per evaluation (the echo runs): this process, every process it started (with Ray
  its daemons) and the host actors; resident memory per host: the growth of this process plus the
  host actors' processes, over connecting (Ray's daemons are a fixed cost, not counted per host).
Sizes larger than the inventory are skipped (`make bench-scale` brings up a 64-host fleet of its own).
At the largest size, Ray is also measured with other numbers of hosts per actor (--per-actor), and
the floor of one Ray actor call (a method that does nothing) is measured once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.naive_loop import naive_run
from bench.scale_report import ECHO, line, section
from bench.sections import update_section
from controller.fleet.executor import ThreadExecutor
from controller.fleet.fleet import ConnectOptions, Fleet, read_originals
from controller.fleet.inventory import load_inventory
from controller.learn.evaluation import HostEvaluator, Recorder
from controller.learn.search import SearchContext, random_search
from controller.spec import TuningSpec
from node_agent import metrics

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


def route_acks(address: str) -> str:
    """How the route to a fleet address acknowledges: "at once" (quickack) or "delayed"."""
    route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True).stdout
    return "at once" if "quickack 1" in route else "delayed"


def ray_call_floor(calls: int = 3000, batch: int = 16, trips: int = 300) -> tuple[float, float, float, float]:
    """CPU ms per call, driver and actor, of a threaded actor method that does nothing, called in
    rounds of `batch` awaited with ray.wait: what one actor call costs at least; the resident MiB
    of that actor, which imports nothing of ours: what any actor costs at least; and the median
    wall ms of `trips` such calls awaited one at a time: what every round pays per actor."""
    import ray

    class Nothing:
        def pid(self) -> int:
            return os.getpid()

        def call(self, packed: tuple) -> tuple:  # (name, key, args) in one, as HostsWorker.call
            return ("ok", {"metrics": {"x": 1.0}, "error": None})

    actor = ray.remote(num_cpus=0, max_concurrency=2 * batch + 1)(Nothing).remote()  # type: ignore[call-overload]  # ray's overloads leave actor options out
    pid = ray.get(actor.pid.remote())
    ray.get([actor.call.remote(("h", 0, ({},))) for _ in range(batch)])
    (me0, _), (act0, _) = _cpu_rss({os.getpid()}), _cpu_rss({pid})
    for _ in range(calls // batch):
        refs = [actor.call.remote(("h", 0, ({"net.ipv4.tcp_fin_timeout": "30"}, True))) for _ in range(batch)]
        ray.wait(refs, num_returns=batch)
        ray.get(refs)
    (me1, _), (act1, rss) = _cpu_rss({os.getpid()}), _cpu_rss({pid})
    walls = []  # one call at a time, awaited: the wall time a round pays per actor, in series
    for _ in range(trips):
        started = time.monotonic()
        ray.get(actor.call.remote(("h", 0, ({"net.ipv4.tcp_fin_timeout": "30"}, True))))
        walls.append(time.monotonic() - started)
    ray.kill(actor)
    n = calls // batch * batch
    return (me1 - me0) / n * 1000, (act1 - act0) / n * 1000, rss, statistics.median(walls) * 1000


def measure(specs: list, workers: str, r1: int, r2: int, sleep_rounds: int, own_ms: float, repeats: int = 1) -> dict:
    n = len(specs)
    spec = spec_for(ECHO)
    _, rss0 = _cpu_rss({os.getpid()})
    t0 = time.monotonic()
    fleet = Fleet.connect(specs, ConnectOptions(knobs=tuple(spec.knob_names), workers=workers))
    connect_s = time.monotonic() - t0
    if fleet.failed:
        sys.exit(f"hosts failed: {fleet.failed}")
    try:
        actors = len(set(_actors(fleet)))
        first_s = connect_s + _rounds(fleet, spec, 1)
        pids = _controller(fleet)
        cpu1, _ = _cpu_rss(pids)
        machine1 = metrics.snapshot()  # how busy every core was over the echo runs: the agent's cpu_util
        slopes = []  # wall per evaluation, the fleet's evaluations together, of each pair of runs
        for _ in range(repeats):
            w1 = _rounds(fleet, spec, r1)
            w2 = _rounds(fleet, spec, r2)
            slopes.append((w2 - w1) / ((r2 - r1) * n) * 1000)
        cpu2, _ = _cpu_rss(pids)
        busy = metrics.derive(machine1, metrics.snapshot())["cpu_util"] / 100
        _, rss = _cpu_rss(_per_host_memory(fleet))
        slope_ms = statistics.median(slopes)  # the machine's own background work comes and goes
        sleep_wall = statistics.median(_rounds(fleet, spec_for(SLEEP), sleep_rounds) for _ in range(repeats))
    finally:
        fleet.close()
    return {"hosts": n, "workers": workers, "actors": actors, "connect_s": connect_s, "first_s": first_s,
            "slope_ms": slope_ms, "marginal_ms": slope_ms - own_ms / n, "per_host_ms": slope_ms * n - own_ms,
            "own_ms": own_ms, "slopes_ms": [round(x, 3) for x in slopes], "cpu_per_host_s": (cpu2 - cpu1) / n / repeats,
            "cpu_per_eval_ms": (cpu2 - cpu1) / ((r1 + r2) * n * repeats) * 1000, "rss_per_host_mb": (rss - rss0) / n,
            "rss_mb": rss - rss0, "busy_share": busy,
            "sleep_wall": sleep_wall}


def naive(specs: list, r1: int, r2: int, own_ms: float) -> dict:
    n = len(specs)
    w1, w2 = naive_run(specs, r1, ECHO), naive_run(specs, r2, ECHO)
    slope_ms = (w2 - w1) / ((r2 - r1) * n) * 1000
    return {"hosts": n, "workers": "naive", "slope_ms": slope_ms, "marginal_ms": slope_ms - own_ms / n,
            "per_host_ms": slope_ms * n - own_ms}


def measure_fleet(everyone: list, args, own_ms: float, top: int) -> list[dict]:
    """Every size and executor on one fleet (its hosts, in inventory order), the naive loop after
    each size; Ray with other numbers of hosts per actor at size `top`, the largest of the run."""
    r1, r2 = (int(x) for x in args.rounds.split(","))
    acks = route_acks(everyone[0].host)
    sizes = [k for k in (int(s) for s in args.sizes.split(",")) if k <= len(everyone)]
    rows = []
    for k in sizes:
        kinds = args.workers.split(",")
        if k == top and "ray" in kinds and args.per_actor:
            kinds += [f"ray:{per}" for per in args.per_actor.split(",")]
        for workers in kinds:
            measured = measure(everyone[:k], workers, r1, r2, args.sleep_rounds, own_ms, args.repeats)
            rows.append({**measured, "acks": acks})
            print(line(rows[-1]), flush=True)
        rows.append({**naive(everyone[:k], r1, r2, own_ms), "acks": acks})
        print(f"naive loop, {k} host(s), ACKs {acks}: {rows[-1]['marginal_ms']:.1f} ms per evaluation amortized, "
              f"{rows[-1]['per_host_ms']:.1f} ms per evaluation per host", flush=True)
    for row in rows:
        if "sleep_wall" in row:  # against 1 host of the same kind (ray:K: of ray; K is moot for one host)
            kind = row["workers"].split(":")[0]
            one = next(r for r in rows if r["hosts"] == 1 and r["workers"] == kind)
            row["efficiency"] = one["sleep_wall"] / row["sleep_wall"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", action="append", help="a fleet's inventory; repeat to measure several fleets "
                    "(default: inventory/local.yml)")
    ap.add_argument("--sizes", default="1,3,16,64")
    ap.add_argument("--workers", default="threads,ray")
    ap.add_argument("--per-actor", default="1,4,64", help="also measure ray:K for these K at the largest size "
                    "('' for none)")
    ap.add_argument("--rounds", default="4,14", help="R1,R2: echo rounds of the two runs the slope is taken from")
    ap.add_argument("--sleep-rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="pairs of echo runs (and sleep runs) per row; the row "
                    "holds their median")
    ap.add_argument("--out", type=Path, help="benchmarks page whose 'scale' section to rewrite")
    args = ap.parse_args()
    args.hosts = args.hosts or ["inventory/local.yml"]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import paramiko  # noqa: F401  (imported once up front: its import is no host's memory)

    load_before = os.getloadavg()[0]
    uses_ray = any(w.startswith("ray") for w in args.workers.split(","))
    ray_start_s = _start_ray() if uses_ray else None
    floor = ray_call_floor() if uses_ray else None
    if floor:
        print(f"one Ray actor call that does nothing: {floor[0]:.2f} ms CPU in the driver, {floor[1]:.2f} ms in "
              f"the actor, {floor[3]:.2f} ms round trip; that actor holds {floor[2]:.0f} MiB", flush=True)
    own_ms = echo_ms()
    print(f"`{ECHO}` itself: {own_ms:.2f} ms", flush=True)
    fleets = [list(load_inventory(path).hosts.values()) for path in args.hosts]
    top = max(k for k in (int(s) for s in args.sizes.split(",")) if k <= max(map(len, fleets)))
    rows = [row for everyone in fleets for row in measure_fleet(everyone, args, own_ms, top)]
    sizes = sorted({r["hosts"] for r in rows})  # every size measured has its naive row
    loads = (load_before, os.getloadavg()[0])
    print(f"1-minute load average: {loads[0]:.1f} before, {loads[1]:.1f} after", flush=True)
    if args.out:
        update_section(args.out, "scale", section(rows, args, sizes, ray_start_s, own_ms, floor, loads))
        data = args.out.with_name(args.out.stem + "-scale.json")  # the rows behind the section
        data.write_text(json.dumps({"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
                                    "cpus": os.cpu_count(), "load_average": loads, "ray_start_s": ray_start_s,
                                    "echo_ms": own_ms, "ray_call_floor_ms": floor, "rows": rows}, indent=1) + "\n")


def _start_ray() -> float:
    """A local Ray, started once before any measurement: a fixed cost, reported on its own."""
    from controller.fleet.ray_executor import init_ray

    started = time.monotonic()
    init_ray()
    return time.monotonic() - started


if __name__ == "__main__":
    main()
