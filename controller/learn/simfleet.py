"""A simulated fleet: hosts whose benchmark result is a known function of their sysctls.

A benchmark and test aid for the search strategies, never a stand-in for the real-host tests:
strategies can only be told apart over many seeds with a known optimum, and real benchmarks
give neither. A ``SimHost`` answers the agent protocol ops the tuning path uses (``hello``,
``read``, ``apply`` with the agent's bounds check, ``run`` with ``sample`` events and the agent's
metric names, ``bye``), so everything above the transport is the real code: ``tune()``,
``SearchContext``, ``HostEvaluator``, the VecEnv, selection.

The family (``member(i)``): up to 8 catalog knobs, the first ``dims`` of ``KNOBS``. Each member
is a server with its own load, and the optimum of every knob follows from it:

- accept queue: somaxconn and tcp_max_syn_backlog act together (the queue is the smaller of
  somaxconn and twice the SYN backlog); while it is shorter than the member's connection burst,
  ``tcp_listen_overflows`` counts the connections dropped; from 1x to 4x the burst is a plateau,
  beyond it queueing latency costs a little;
- socket buffers (tcp_rmem / tcp_wmem max): below the bandwidth-delay product, throughput is
  window-limited and ``tcp_retrans_per_s`` rises; beyond 4x it, memory pressure costs a little.
  Together they must fit in the member's memory or the benchmark fails (out of memory), and a
  member may have a kernel cap above which the receive buffer write is refused (EINVAL);
- tcp_fin_timeout: orphaned connections pile up above the member's optimum; below the member's
  floor the peer resets connections and the benchmark fails;
- netdev_max_backlog: like a queue, against the member's packet burst;
- tcp_slow_start_after_idle, tcp_tw_reuse: choices with a member-specific gain.

Penalties add in log space; the member's weights are scaled so the original configuration is
``ratio`` times worse than the optimum (1.2x to 1000x, log-uniform over the family). Noise is
multiplicative, 1-10 % per member. ``true_perf`` is the noiseless surface regret is measured on.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from node_agent import protocol, sysctl

if TYPE_CHECKING:
    from controller.fleet.session import Host

REQUEST_RATE = 20000.0  # connections per second the simulated clients open at the optimum
OVERSIZE = 0.1          # queues and buffers far beyond the need cost a little (latency, memory)


@dataclass(frozen=True)
class SimKnob:
    param: str
    spec: dict          # the spec's action_space entry (catalog bounds or narrower)


KNOBS: tuple[SimKnob, ...] = (
    SimKnob("net.core.somaxconn", {"min": 16, "max": 65535}),
    SimKnob("net.ipv4.tcp_max_syn_backlog", {"min": 16, "max": 65535}),
    SimKnob("net.ipv4.tcp_rmem", {"min": [4096, 131072, 131072], "max": [4096, 131072, 268435456]}),
    SimKnob("net.ipv4.tcp_wmem", {"min": [4096, 16384, 16384], "max": [4096, 16384, 268435456]}),
    SimKnob("net.ipv4.tcp_fin_timeout", {"min": 5, "max": 120}),
    SimKnob("net.core.netdev_max_backlog", {"min": 300, "max": 65536}),
    SimKnob("net.ipv4.tcp_slow_start_after_idle", {"values": ["0", "1"]}),
    SimKnob("net.ipv4.tcp_tw_reuse", {"values": ["0", "1", "2"]}),
)


def _int(text: str) -> int:
    return int(str(text).split()[-1])  # vector knobs: the max component is the one searched


@dataclass
class Member:
    """One response surface of the family. Every number here is drawn by ``member(i)``."""

    index: int
    dims: int
    originals: dict[str, str]
    burst: float                 # connections arriving at once: the accept queue it needs
    bdp_r: float                 # bytes in flight per connection, receive and send
    bdp_w: float
    fin_opt: float
    fin_floor: float
    packet_burst: float
    choice_best: dict[str, str]
    weights: dict[str, float]
    memory: float                # bytes the buffers may take together before the benchmark fails
    rmem_cap: float | None       # this kernel refuses a larger tcp_rmem max (EINVAL)
    noise: float
    ratio: float                 # optimum / original
    peak: float = REQUEST_RATE

    @property
    def knobs(self) -> tuple[SimKnob, ...]:
        return KNOBS[: self.dims]

    def spec_dict(self) -> dict:
        return {
            "workload_name": f"sim-{self.dims}k-{self.index}",
            "description": "simulated web server (controller/learn/simfleet.py)",
            "reward_metric": "requests_per_second",
            "benchmark_command": "wrk -t2 -c64 -d10s http://127.0.0.1/",
            "action_space": [{"param": k.param, **k.spec} for k in self.knobs],
            "baseline_repeats": 2,
        }

    def spec(self):
        from controller.spec import TuningSpec  # here: pydantic (~0.15 s), which the simulated hosts need not

        return TuningSpec.from_dict(self.spec_dict(), f"simulated member {self.index}")

    # --- the surface -------------------------------------------------------------------------

    def shortfalls(self, values: dict[str, str]) -> dict[str, float]:
        """How far each knob is from its optimum, in the unit its penalty is linear in (>= 0)."""
        v = {**self.originals, **values}
        queue = min(_int(v["net.core.somaxconn"]), 2 * _int(v["net.ipv4.tcp_max_syn_backlog"]))
        rmem, wmem = _int(v["net.ipv4.tcp_rmem"]), _int(v["net.ipv4.tcp_wmem"])
        fin = _int(v["net.ipv4.tcp_fin_timeout"])
        out = {
            "queue": max(0.0, math.log(self.burst / queue)) + OVERSIZE * max(0.0, math.log(queue / (4 * self.burst))),
            "rmem": max(0.0, math.log(self.bdp_r / rmem)) + OVERSIZE * max(0.0, math.log(rmem / (4 * self.bdp_r))),
            "wmem": max(0.0, math.log(self.bdp_w / wmem)) + OVERSIZE * max(0.0, math.log(wmem / (4 * self.bdp_w))),
            "fin": max(0.0, fin - self.fin_opt) / 30.0,
            "backlog": max(0.0, math.log(self.packet_burst / _int(v["net.core.netdev_max_backlog"]))),
        }
        for name, best in self.choice_best.items():
            out[name] = 0.0 if v[name] == best else 1.0
        return out

    def failure(self, values: dict[str, str]) -> str | None:
        v = {**self.originals, **values}
        if _int(v["net.ipv4.tcp_rmem"]) + _int(v["net.ipv4.tcp_wmem"]) > self.memory:
            return "out of memory: socket buffers exceed what the server can hold"
        if _int(v["net.ipv4.tcp_fin_timeout"]) < self.fin_floor:
            return "connection reset by peer"
        return None

    def true_perf(self, values: dict[str, str]) -> float:
        """Requests per second without noise; 0 where the benchmark fails."""
        if self.failure(values):
            return 0.0
        s = self.shortfalls(values)
        return self.peak * math.exp(-sum(self.weights.get(k, 0.0) * x for k, x in s.items()))

    def regret(self, values: dict[str, str]) -> float:
        """0 = the optimum, 1 = the original configuration (capped: a worse choice keeps the original)."""
        f0 = self.true_perf(self.originals)
        return min(1.0, max(0.0, (self.peak - self.true_perf(values)) / (self.peak - f0)))

    def optimum(self) -> dict[str, str]:
        """A configuration on the optimum's plateau (every shortfall 0, no failure)."""
        out = {}
        for k in self.knobs:
            p = k.param
            if p in ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog"):
                value = str(int(math.ceil(self.burst)))
            elif p == "net.ipv4.tcp_rmem":
                value = f"4096 131072 {int(math.ceil(self.bdp_r * 2))}"
            elif p == "net.ipv4.tcp_wmem":
                value = f"4096 16384 {int(math.ceil(self.bdp_w * 2))}"
            elif p == "net.ipv4.tcp_fin_timeout":
                value = str(int(math.ceil(max(self.fin_opt, self.fin_floor))))
            elif p == "net.core.netdev_max_backlog":
                value = str(int(math.ceil(self.packet_burst)))
            else:
                value = self.choice_best[p]
            out[p] = value
        return out

    def metrics(self, values: dict[str, str], perf: float, rng: np.random.Generator) -> dict[str, float]:
        """What the agent would report over the run, with the agent's names (node_agent/metrics.py)."""
        v = {**self.originals, **values}
        queue = min(_int(v["net.core.somaxconn"]), 2 * _int(v["net.ipv4.tcp_max_syn_backlog"]))
        short_r = max(0.0, 1.0 - _int(v["net.ipv4.tcp_rmem"]) / self.bdp_r)
        short_w = max(0.0, 1.0 - _int(v["net.ipv4.tcp_wmem"]) / self.bdp_w)
        buffers = _int(v["net.ipv4.tcp_rmem"]) + _int(v["net.ipv4.tcp_wmem"])
        share = perf / self.peak
        jitter = lambda: float(rng.lognormal(0.0, 0.05))  # noqa: E731
        return {
            "cpu_util": min(100.0, 10.0 + 80.0 * share) * jitter(),
            "cpu_system": min(100.0, 5.0 + 40.0 * share) * jitter(),
            "cpu_iowait": 0.5 * jitter(),
            "ctxt_per_s": (2000.0 + 4.0 * perf) * jitter(),
            "mem_used_pct": min(99.0, 20.0 + 60.0 * buffers / self.memory) * jitter(),
            "tcp_passive_opens_per_s": perf * jitter(),
            "tcp_retrans_per_s": (1.0 + 500.0 * (short_r + short_w)) * jitter(),
            "tcp_listen_overflows": 10.0 * REQUEST_RATE * max(0.0, 1.0 - queue / self.burst) * jitter(),
            "tcp_listen_drops": 10.0 * REQUEST_RATE * max(0.0, 1.0 - queue / self.burst) * jitter(),
            "net_rx_mb_per_s": perf * 0.01 * jitter(),
            "net_tx_mb_per_s": perf * 0.05 * jitter(),
            "load1": 1.0 + 3.0 * share,
        }


def _loguniform(rng, lo, hi) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def member(index: int, dims: int = 4, family_seed: int = 0) -> Member:
    """Member ``index`` of the family with ``dims`` knobs (2..8); the same arguments, the same surface."""
    if not 2 <= dims <= len(KNOBS):
        raise ValueError(f"dims must be 2..{len(KNOBS)}, got {dims}")
    rng = np.random.default_rng([family_seed, dims, index])
    somax = int(_loguniform(rng, 64, 1024))
    burst = _loguniform(rng, max(4 * somax, 2048), 50000)
    bdp_r, bdp_w = _loguniform(rng, 8e6, 64e6), _loguniform(rng, 8e6, 64e6)
    fin_floor = float(rng.integers(5, 15))
    originals = {
        "net.core.somaxconn": str(somax),
        "net.ipv4.tcp_max_syn_backlog": str(int(_loguniform(rng, 128, 2048))),
        "net.ipv4.tcp_rmem": f"4096 131072 {int(_loguniform(rng, 1e6, bdp_r / 2))}",
        "net.ipv4.tcp_wmem": f"4096 16384 {int(_loguniform(rng, 1e6, bdp_w / 2))}",
        "net.ipv4.tcp_fin_timeout": str(int(rng.integers(60, 121))),
        "net.core.netdev_max_backlog": "1000",
        "net.ipv4.tcp_slow_start_after_idle": "1",
        "net.ipv4.tcp_tw_reuse": "2",
    }
    weights = {"queue": rng.uniform(0.5, 2.0), "rmem": rng.uniform(0.5, 2.0), "wmem": rng.uniform(0.3, 1.5),
             "fin": rng.uniform(0.2, 1.0), "backlog": rng.uniform(0.2, 1.0),
             "net.ipv4.tcp_slow_start_after_idle": rng.uniform(0.05, 0.3),
             "net.ipv4.tcp_tw_reuse": rng.uniform(0.05, 0.3)}
    in_spec = {"queue": True, "rmem": dims > 2, "wmem": dims > 3, "fin": dims > 4, "backlog": dims > 5,
               "net.ipv4.tcp_slow_start_after_idle": dims > 6, "net.ipv4.tcp_tw_reuse": dims > 7}
    m = Member(
        index=index, dims=dims, originals=originals, burst=burst, bdp_r=bdp_r, bdp_w=bdp_w,
        fin_opt=float(rng.integers(int(fin_floor) + 3, 40)), fin_floor=fin_floor,
        packet_burst=_loguniform(rng, 4000, 30000),
        choice_best={"net.ipv4.tcp_slow_start_after_idle": "0", "net.ipv4.tcp_tw_reuse": "1"},
        weights={k: float(w) if in_spec[k] else 0.0 for k, w in weights.items()},
        memory=_loguniform(rng, 6.0, 20.0) * (bdp_r + bdp_w),
        rmem_cap=_loguniform(rng, 4.0, 16.0) * bdp_r if rng.random() < 0.5 else None,
        noise=float(rng.uniform(0.01, 0.10)), ratio=_loguniform(rng, 1.2, 1000.0),
    )
    # scale the weights so the original is `ratio` times worse than the optimum
    total = sum(m.weights[k] * x for k, x in m.shortfalls(originals).items())
    m.weights = {k: w * math.log(m.ratio) / total for k, w in m.weights.items()}
    return m


@dataclass
class SimHost:
    """One simulated host with the surface of Host (name, facts, request, close)."""

    name: str
    member: Member
    seed: int = 0
    delay_s: float = 0.0          # per benchmark, to look like a slow host in the live view
    facts: dict = field(default_factory=dict)

    def __post_init__(self):
        self.values = dict(self.member.originals)
        self.rng = np.random.default_rng(self.seed)
        self._lock = threading.Lock()
        self.facts = {"hostname": self.name, "kernel": "6.1.0-sim", "boot_id": f"sim-{self.name}", "cpus": 4,
                      "mem_total_kb": 16 * 1024 * 1024, "python": "3.11", "tools": {"wrk": "/usr/bin/wrk"},
                      "services": {}, "distro": {"id": "debian"}, "simulated": True}
        self.runs = 0

    def request(self, op: str, args: dict | None = None, timeout: float = 30.0, on_event=None):
        args = args or {}
        with self._lock:
            if op == "hello":
                return dict(self.facts)
            if op == "read":
                names = args.get("names") or []
                return {"values": {n: self.values[n] for n in names if n in self.values},
                        "missing": [n for n in names if n not in self.values], "errors": {}}
            if op == "apply":
                return self._apply(args.get("values") or {}, args.get("bounds") or {})
            if op == "run":
                staged = args.get("apply")
                applied = self._apply(staged.get("values") or {}, staged.get("bounds") or {}) if staged else None
                if applied and applied["refused"]:
                    return {"apply": applied}
                return {**self._run(on_event), **({"apply": applied} if applied else {})}
            if op in ("restore", "bye"):
                restored, self.values = dict(self.member.originals), dict(self.member.originals)
                return {"restored": restored, "errors": {}}
        raise ValueError(f"the simulated host does not answer {op!r}")

    def close(self, keep: bool = False) -> dict:
        return self.request("bye", {"keep": keep})

    def _apply(self, values: dict, bounds: dict) -> dict:
        applied, refused = {}, {}
        for name, value in values.items():
            try:
                if name not in self.values:
                    raise sysctl.Refused(name, protocol.E_VALIDATION, f"{name}: no such sysctl")
                text = sysctl.normalize(name, value)
                sysctl.check_bounds(name, text, bounds.get(name))
                cap = self.member.rmem_cap
                if name == "net.ipv4.tcp_rmem" and cap is not None and _int(text) > cap:
                    raise sysctl.Refused(name, protocol.E_OS, f"write {name}: Invalid argument (EINVAL)", 22)
                applied[name] = text
            except sysctl.Refused as e:
                refused[name] = e.as_dict()
        self.values.update(applied)
        return {"applied": applied, "refused": refused}

    def _run(self, on_event) -> dict:
        self.runs += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        m = self.member
        why = m.failure(self.values)
        perf = 0.0 if why else m.true_perf(self.values) * float(self.rng.lognormal(0.0, m.noise))
        metrics = m.metrics(self.values, perf, self.rng)
        if on_event is not None:
            for t in (1.0, 2.0):
                on_event({"event": "sample", "id": self.runs, "data": {"t": t, "metrics": dict(metrics)}})
        if why:
            return {"exit_code": 1, "duration_s": 10.0, "timed_out": False, "stdout_tail": "",
                    "stderr_tail": why + "\n", "metrics": metrics, "samples": 2}
        stdout = f"Running 10s test @ http://127.0.0.1/\nRequests/sec: {perf:.2f}\nTransfer/sec: 1.00MB\n"
        return {"exit_code": 0, "duration_s": 10.0, "timed_out": False, "stdout_tail": stdout,
                "stderr_tail": "", "metrics": metrics, "samples": 2}


def sim_fleet(m: Member | list[Member], hosts: int = 3, seed: int = 0, delay_s: float = 0.0):
    """A controller.fleet.fleet.Fleet of ``hosts`` simulated hosts, all running member ``m``, or
    host i running ``m[i % len(m)]`` when ``m`` is a list (members with the same knobs: a fleet
    of different servers, for training a policy across the family at once)."""
    from controller.fleet.fleet import Fleet  # here: the SSH stack, which simulated hosts need not

    members = m if isinstance(m, list) else [m]
    if len({x.dims for x in members}) != 1:
        raise ValueError("the members of one simulated fleet must have the same knobs")
    sims = {f"sim{i + 1}": SimHost(f"sim{i + 1}", members[i % len(members)], seed=seed * 1000 + i, delay_s=delay_s)
            for i in range(hosts)}
    return Fleet(hosts=cast("dict[str, Host]", sims))  # a SimHost answers as a Host does (request, facts, close)
