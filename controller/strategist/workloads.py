"""The built-in workloads: a benchmark with a measured signal, the server it measures (run by the
tool itself), the knobs worth turning for it with a reason each, and the expert priors.

Servers are the tool's own private instances (``tunefleet-service``, node_agent/services.py): set
up once per host, started before the baseline, restarted before measured runs when a knob takes
effect only at listen() (net.core.somaxconn), reset before every measured run where data grows,
stopped and removed at the end. A host's own nginx, Redis or PostgreSQL is never touched.

Each workload's priors are its own expert guess plus the matching expert profiles
(controller/profiles: TuneD, a server's documentation) restricted to its knobs, so every search
starts by measuring what an administrator would apply instead (docs/workloads.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller import profiles
from controller.knob import Knob
from controller.spec import TuningSpec

SERVICE = "tunefleet-service"
PG_PORT, NGINX_PORT, REDIS_PORT, SINK_PORT = 15432, 18080, 16379, 15201
# the long-distance link of the `link` workload: a bandwidth-delay product of 3.75 MB, near the
# 4 MiB send buffer ceiling most kernels ship (docs/workloads.md)
LINK = {"delay_ms": 100, "rate_mbit": 300, "loss_pct": 0.01, "limit": 8000}
PGBENCH = f"pgbench -h 127.0.0.1 -p {PG_PORT} -U pgbench -j 2 -n"
MAX_PROFILE_PRIORS = 3


def _knob(param: str, rationale: str, **range_) -> dict:
    return {"param": param, **range_, "rationale": rationale}


def _prior(reason: str, **values) -> dict:
    """An expert's first configuration for a workload (controller/priors.py)."""
    return {"values": values, "reason": reason}


def _server(kind: str, port: int, setup: str = "", reset: bool = False) -> dict:
    """The spec fields that have the tool run a private ``kind`` server on ``port``."""
    out = {"setup": [f"{SERVICE} {kind} setup --port {port} {setup}".strip()],
           "teardown": [f"{SERVICE} {kind} teardown"],
           "service": {"name": kind, "start": f"{SERVICE} {kind} start", "stop": f"{SERVICE} {kind} stop",
                       "ready": f"127.0.0.1:{port}", "restart": "auto", "timeout": 60}}
    if reset:
        out["reset"] = f"{SERVICE} {kind} reset"
    return out


@dataclass(frozen=True)
class Workload:
    key: str
    name: str
    description: str
    keywords: dict[str, int]          # word or phrase -> weight
    spec_data: dict
    tools: tuple[str, ...] = ()       # as in hello's `tools`; built-in benchmarks need none
    services: tuple[str, ...] = ()    # as in hello's `services`
    caveats: tuple[str, ...] = ()     # said with every plan of this workload
    notes: str = ""                   # how to adapt it to your hosts

    @property
    def spec(self) -> TuningSpec:
        """A fresh spec each time: callers may change theirs."""
        text = f"{self.description} {self.notes}".strip()
        data = {"workload_name": self.name, "description": text, **self.spec_data}
        data["initial_candidates"] = list(data.get("initial_candidates", [])) + profile_priors(self.key, data)
        return TuningSpec.from_dict(data, f"built-in workload {self.key}")

    @property
    def rationale(self) -> dict[str, str]:
        return {k["param"]: k.get("rationale", "") for k in self.spec_data["action_space"]}


def profile_priors(key: str, data: dict) -> list[dict]:
    """The matching expert profiles as priors: each one's values for this workload's knobs (where
    they fall in the knob's range), the workload's own prior for the rest."""
    knobs = {k["param"]: Knob.model_validate({n: v for n, v in k.items() if n != "rationale"})
             for k in data["action_space"]}
    own = data.get("initial_candidates") or []
    if not own:
        return []
    out: list[dict[str, Any]] = []
    for profile in profiles.for_workload(key) if key in profiles.workload_keys() else []:
        values = {n: v for n, v in profile.values.items() if n in knobs and knobs[n].contains(v)}
        if values and len(out) < MAX_PROFILE_PRIORS:
            rest = len(set(knobs) - set(values))
            reason = f"the expert profile {profile.name}" + (f"; its other {rest} knob(s) as the workload's own "
                                                              "prior" if rest else "")
            out.append({"values": {**own[0]["values"], **values}, "reason": reason})
    return out


_PG_SCHED = [
    _knob("kernel.sched_autogroup_enabled", "autogroup shares the CPU equally between sessions, and pgbench's "
          "clients and the backends are different sessions; TuneD's postgresql profile turns it off",
          values=["0", "1"]),
    _knob("kernel.sched_migration_cost_ns", "how long a task stays cache-hot and is not moved to another CPU "
          "(a sysctl until 5.13)", min=50000, max=5000000, scale="log"),
]
_PG_WRITES = [
    _knob("vm.dirty_ratio", "how much dirty page cache writers may build up before they are throttled; "
          "matters when WAL and checkpoints write faster than the disk absorbs", min=5, max=60),
    _knob("vm.dirty_background_ratio", "when background writeback starts; lower smooths checkpoints",
          min=1, max=30),
    _knob("vm.swappiness", "keep PostgreSQL's shared buffers and backends out of swap", min=0, max=100),
]
_SOMAXCONN = _knob("net.core.somaxconn", "caps the server's accept queue when it listens (the run restarts "
                   "it): a burst of clients larger than the queue waits for a 1 s SYN retransmit",
                   min=128, max=4096, scale="log")
_SYN_BACKLOG = _knob("net.ipv4.tcp_max_syn_backlog", "half-open connections kept while the server catches up",
                     min=128, max=4096, scale="log")
_PG_STATE = [{"metric": m} for m in ("cpu_util", "cpu_iowait", "psi_io_some", "ctxt_per_s")]


def _pg(key: str, name: str, description: str, keywords: dict, command: str, knobs: list, prior: dict,
        caveats=()) -> Workload:
    data = {"reward_metric": "transactions_per_second", "report_metrics": ["latency_avg_ms"],
            "benchmark_command": command, "benchmark_timeout": 60,
            **_server("postgres", PG_PORT, "--scale 5", reset=True),
            "warmup": command.replace("-T 10", "-T 2"),
            "action_space": knobs, "state_space": _PG_STATE, "initial_candidates": [prior]}
    return Workload(key, name, description, keywords, data, tools=("pgbench", "initdb"), caveats=tuple(caveats),
                    notes="tunefleet runs its own PostgreSQL on 127.0.0.1:15432 (initdb, pgbench -i -s 5) and "
                          "removes it at the end; your own server is never touched.")


WORKLOADS: tuple[Workload, ...] = (
    _pg("pg-oltp", "PostgreSQL OLTP",
        "pgbench TPC-B-like read-write transactions (8 clients, 10 s) on a private PostgreSQL; reward: tps, "
        "latency reported.",
        {"postgres": 3, "pgbench": 3, "database": 2, "db": 2, "oltp": 3, "transaction": 2, "sql": 1, "write": 1},
        f"{PGBENCH} -c 8 -T 10 pgbench",
        _PG_WRITES + _PG_SCHED + [_SOMAXCONN],
        _prior("smaller dirty thresholds spread checkpoint writes out; little swapping; no autogroup between "
               "clients and backends", **{"vm.dirty_ratio": 15, "vm.dirty_background_ratio": 5, "vm.swappiness": 10,
                                          "kernel.sched_autogroup_enabled": "0",
                                          "kernel.sched_migration_cost_ns": 500000, "net.core.somaxconn": 1024}),
        caveats=("at a small scale (data in RAM, 10 s runs) the vm.dirty_* knobs often show no effect beyond "
                 "pgbench's ~3% noise: expect 'no significant improvement' unless the data outgrows memory",)),
    _pg("pg-select", "PostgreSQL read-only queries",
        "pgbench select-only (-S, 8 clients, 10 s) on a private PostgreSQL: CPU and scheduler bound; reward: tps.",
        {"postgres": 3, "pgbench": 2, "read only": 5, "readonly": 5, "select": 4, "read heavy": 5, "query": 2,
         "reporting": 2, "cache": 1},
        f"{PGBENCH} -S -c 8 -T 10 pgbench",
        [_PG_SCHED[0], _PG_SCHED[1], _PG_WRITES[2], _SOMAXCONN],
        _prior("no autogroup between clients and backends, little swapping",
               **{"kernel.sched_autogroup_enabled": "0", "kernel.sched_migration_cost_ns": 500000,
                  "vm.swappiness": 10, "net.core.somaxconn": 1024})),
    _pg("pg-connect", "PostgreSQL with many short connections",
        "pgbench -C: a new TCP connection per transaction (32 clients, 10 s), like an application without a "
        "pool; reward: tps.",
        {"postgres": 3, "pgbench": 2, "short connection": 5, "short lived": 3, "many connection": 3,
         "new connection": 3, "reconnect": 4, "connection per": 4, "connect": 1, "pool": 2, "pgbouncer": 2},
        f"{PGBENCH} -C -c 32 -T 10 pgbench",
        [_SOMAXCONN, _SYN_BACKLOG,
         _knob("net.ipv4.tcp_fin_timeout", "how long closed connections hold resources in FIN_WAIT_2", min=5, max=60),
         _knob("net.ipv4.tcp_tw_reuse", "lets the client reuse TIME_WAIT ports for new connections",
               values=["0", "1", "2"]),
         _knob("net.ipv4.ip_local_port_range", "more ephemeral ports before TIME_WAIT exhausts them "
               "(the upper end stays fixed)", min="1024 60999", max="32768 60999")],
        _prior("full queues for connection bursts, quick FIN_WAIT_2, TIME_WAIT reuse, every ephemeral port", **{
            "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 4096, "net.ipv4.tcp_fin_timeout": 15,
            "net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "1024 60999"}),
        caveats=("a new backend process per connection dominates: the network knobs matter only when connections "
                 "arrive in bursts larger than the accept queue",)),
    Workload(
        "nginx", "nginx under a burst of new connections",
        "ab: 1000 clients at once, a new connection per request (30000 requests of a 4 KiB file) on a private "
        "nginx; reward: p99 latency (ms, lower is better), requests/s reported.",
        {"web": 3, "website": 3, "http": 3, "nginx": 4, "server": 1, "request": 1, "burst": 3, "spike": 2,
         "latency": 2, "tail": 2, "p99": 3, "ab": 2, "static": 2},
        {"reward_metric": "latency_p99_ms", "reward_goal": "minimize", "report_metrics": ["requests_per_second"],
         "benchmark_command": f"ab -q -r -n 30000 -c 1000 http://127.0.0.1:{NGINX_PORT}/", "benchmark_timeout": 120,
         **_server("nginx", NGINX_PORT, "--workers 2 --file-kb 4"),
         "action_space": [_SOMAXCONN, _SYN_BACKLOG,
                          _knob("net.ipv4.tcp_fin_timeout", "how fast closed connections free their resources",
                                min=5, max=60),
                          _knob("net.ipv4.tcp_tw_reuse", "reuse of TIME_WAIT ports by the load generator",
                                values=["0", "1", "2"])],
         "state_space": [{"metric": m} for m in ("cpu_util", "tcp_passive_opens_per_s", "tcp_listen_overflows",
                                                 "tcp_listen_drops")],
         "initial_candidates": [_prior("the usual busy web server settings: long accept and SYN queues, "
                                       "quick FIN_WAIT_2, TIME_WAIT reuse", **{
             "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 4096, "net.ipv4.tcp_fin_timeout": 15,
             "net.ipv4.tcp_tw_reuse": "1"})]},
        tools=("ab", "nginx"),
        notes="tunefleet runs its own nginx on 127.0.0.1:18080 and removes it at the end. Under a burst the "
              "requests/s hardly move (ab's clients wait through a dropped SYN together); the tail latency is "
              "what the clients feel."),
    Workload(
        "nginx-keepalive", "nginx with keep-alive clients",
        "wrk: 64 keep-alive connections for 10 s against a 4 KiB file on a private nginx; reward: requests/s, "
        "p99 latency reported.",
        {"web": 2, "http": 2, "nginx": 3, "keepalive": 5, "keep alive": 5, "persistent": 3, "wrk": 3,
         "throughput": 1, "requests per second": 3},
        {"reward_metric": "requests_per_second", "report_metrics": ["latency_p99_ms"],
         "benchmark_command": f"wrk -t 2 -c 64 -d 10s --latency http://127.0.0.1:{NGINX_PORT}/",
         "benchmark_timeout": 60, **_server("nginx", NGINX_PORT, "--workers 2 --file-kb 4"),
         "action_space": [
             _SOMAXCONN,
             _knob("kernel.sched_autogroup_enabled", "autogroup splits the CPU between wrk's session and nginx's",
                   values=["0", "1"]),
             _knob("net.ipv4.tcp_slow_start_after_idle", "a connection idle between requests restarts slow start",
                   values=["0", "1"]),
             _knob("net.ipv4.tcp_wmem", "send buffer of the responses", min="4096 16384 65536",
                   max="4096 262144 8388608")],
         "state_space": [{"metric": m} for m in ("cpu_util", "ctxt_per_s", "net_tx_mb_per_s")],
         "initial_candidates": [_prior("a long accept queue, no autogroup, no slow start after idle", **{
             "net.core.somaxconn": 4096, "kernel.sched_autogroup_enabled": "0",
             "net.ipv4.tcp_slow_start_after_idle": "0", "net.ipv4.tcp_wmem": "4096 16384 4194304"})]},
        tools=("wrk", "nginx"), notes="tunefleet runs its own nginx on 127.0.0.1:18080 and removes it at the end.",
        caveats=("keep-alive connections are made once per run: the queue and buffer knobs rarely matter here",)),
    Workload(
        "redis", "Redis",
        "redis-benchmark: 512 clients, 200000 SET and GET requests on a private Redis; reward: requests/s (mean "
        "of SET and GET), p99 latency reported.",
        {"redis": 5, "cache": 2, "key value": 4, "keyvalue": 4, "kv": 2, "memcache": 2, "in memory": 2},
        {"reward_metric": "redis_requests_per_second", "report_metrics": ["latency_p99_ms"],
         "benchmark_command": f"redis-benchmark -p {REDIS_PORT} -c 512 -n 200000 -t set,get --csv",
         "benchmark_timeout": 60, **_server("redis", REDIS_PORT, reset=True),
         "action_space": [
             _SOMAXCONN, _SYN_BACKLOG,
             _knob("kernel.sched_autogroup_enabled", "autogroup splits the CPU between the benchmark's session and "
                   "Redis's", values=["0", "1"]),
             _knob("vm.overcommit_memory", "Redis's documentation asks for 1 so a background save's fork cannot "
                   "fail", values=["0", "1"])],
         "state_space": [{"metric": m} for m in ("cpu_util", "ctxt_per_s", "tcp_listen_overflows")],
         "initial_candidates": [_prior("Redis's documented settings: an accept queue for its tcp-backlog 511, "
                                       "overcommit for fork; no autogroup", **{
             "net.core.somaxconn": 1024, "net.ipv4.tcp_max_syn_backlog": 1024,
             "kernel.sched_autogroup_enabled": "0", "vm.overcommit_memory": "1"})]},
        tools=("redis-benchmark", "redis-server"),
        notes="tunefleet runs its own Redis (no persistence) on 127.0.0.1:16379 and removes it at the end."),
    Workload(
        "connection-storm", "Connection storm (accept backlog)",
        "built-in: 256 loopback clients connect at once; reward: ms until all are accepted (lower is better).",
        {"new connection": 4, "connect": 2, "accept": 3, "backlog": 3, "storm": 4, "burst": 3, "syn": 3,
         "handshake": 3, "somaxconn": 4, "listen": 2, "spike": 2, "thundering herd": 4},
        {"reward_metric": "elapsed_ms", "reward_goal": "minimize",
         "benchmark_command": "tunefleet-bench accept-storm --clients 256", "benchmark_timeout": 60,
         "action_space": [
             # The floor is 64, not the catalog's 16: far below the burst size, clients wait through
             # the 1 s, 3 s, 7 s retransmit ladder and one evaluation costs tens of seconds.
             _knob("net.core.somaxconn", "caps the accept queue: when it is shorter than the burst, dropped SYNs "
                   "cost a 1 s retransmit", min=64, max=4096, scale="log"),
             _knob("net.ipv4.tcp_max_syn_backlog", "half-open connections kept during the burst",
                   min=64, max=4096, scale="log")],
         "state_space": [{"metric": m} for m in ("tcp_listen_overflows", "tcp_listen_drops", "tcp_retrans_per_s")],
         "initial_candidates": [_prior("queues longer than the 256-client burst: no SYN is dropped",
                                       **{"net.core.somaxconn": 1024, "net.ipv4.tcp_max_syn_backlog": 1024})]},
        notes="Needs no tool or server: the agent runs it. Raise --clients to model bigger bursts."),
    Workload(
        "cpu", "CPU bound (null workload)",
        "sysbench cpu (primes, 2 threads, 10 s); reward: events/s. A control: no sysctl should move it.",
        {"cpu": 4, "cpu bound": 2, "compute": 3, "processor": 3, "scheduler": 2, "number crunching": 3,
         "calculation": 2, "null workload": 4, "sysbench": 1},
        {"reward_metric": "events_per_second", "benchmark_command": "sysbench cpu --threads=2 --time=10 run",
         "benchmark_timeout": 60,
         "action_space": [
             _knob("kernel.sched_autogroup_enabled", "groups tasks by session for fairness; matters for "
                   "interactive mixes, not for one batch job", values=["0", "1"]),
             _knob("vm.swappiness", "irrelevant to a CPU loop: should show no effect", min=0, max=100)],
         "state_space": [{"metric": m} for m in ("cpu_util", "ctxt_per_s", "procs_running")]},
        tools=("sysbench",), notes="Match --threads to the hosts' CPUs. Its noise is about 0.2%.",
        caveats=("a null workload: any 'improvement' beyond noise here would be a measurement artefact",)),
    Workload(
        "fileio", "File I/O (page cache writeback)",
        "sysbench fileio random writes without fsync over 2 GiB of files, 10 s; reward: events/s.",
        {"file": 2, "fileio": 4, "disk": 3, "io": 3, "storage": 3, "write": 2, "writeback": 4, "dirty": 3,
         "fsync": 3, "ssd": 3, "nvme": 3, "iops": 3, "filesystem": 2},
        {"reward_metric": "events_per_second",
         "benchmark_command": "sysbench fileio --file-total-size=2G --file-test-mode=rndwr --file-fsync-freq=0 "
                              "--time=10 run",
         "benchmark_cwd": "/var/tmp/tunefleet-fileio/fileio", "benchmark_timeout": 90,
         "setup": [f"{SERVICE} fileio setup --dir /var/tmp/tunefleet-fileio --size 2G"],
         "teardown": [f"{SERVICE} fileio teardown --dir /var/tmp/tunefleet-fileio"],
         "action_space": [
             _knob("vm.dirty_ratio", "dirty data allowed before writers block", min=5, max=60),
             _knob("vm.dirty_background_ratio", "when background writeback starts", min=1, max=30),
             _knob("vm.dirty_expire_centisecs", "age at which dirty data must be written", min=500, max=6000),
             _knob("vm.dirty_writeback_centisecs", "how often the writeback threads wake", min=100, max=1500)],
         "state_space": [{"metric": m} for m in ("cpu_iowait", "psi_io_some", "psi_io_full", "mem_used_pct")],
         "initial_candidates": [_prior("let random writes collect in the page cache and go out in larger batches",
                                       **{"vm.dirty_ratio": 40, "vm.dirty_background_ratio": 10,
                                          "vm.dirty_expire_centisecs": 3000, "vm.dirty_writeback_centisecs": 500})]},
        tools=("sysbench",),
        notes="tunefleet makes the 2 GiB of test files in /var/tmp/tunefleet-fileio and removes them at the end; "
              "put that folder on the disk you care about."),
    Workload(
        "link", "Bulk transfer over a long-distance link",
        "built-in: each host streams to its partner for 5 s and the last 3 count (the first 2 are slow start; "
        "a warm-up round first) over a "
        f"{LINK['rate_mbit']:g} Mbit/s link with {LINK['delay_ms']:g} ms of delay and {LINK['loss_pct']:g}% loss, "
        "emulated on the sender; reward: Mbit/s the receiver counted.",
        {"long distance": 5, "wan": 5, "remote site": 4, "cross region": 4, "across the world": 4, "replication": 2,
         "backup": 2, "latency": 1, "high latency": 4, "bdp": 5, "bandwidth delay": 5, "link": 2, "between hosts": 3,
         "congestion control": 4, "bbr": 4, "throughput": 1, "transfer": 2},
        {"reward_metric": "throughput_mbit_s",
         "benchmark_command": f"tunefleet-bench stream --to {{peer}}:{SINK_PORT} --seconds 3 --omit 2 --rounds 1 "
                              "--timeout 10",
         "benchmark_timeout": 60,
         "peer": {"pairs": "auto", "link": dict(LINK)},
         **_server("sink", SINK_PORT),
         "action_space": [
             _knob("net.ipv4.tcp_rmem", "the receiver's buffer ceiling bounds its window: a window smaller than the "
                   "bandwidth-delay product leaves the link idle", min="4096 131072 4194304",
                   max="4096 262144 134217728", scale="log"),
             _knob("net.ipv4.tcp_wmem", "the sender's buffer ceiling bounds the data in flight, which must cover the "
                   "bandwidth-delay product", min="4096 16384 1048576", max="4096 262144 134217728", scale="log"),
             _knob("net.ipv4.tcp_congestion_control", "loss-based cubic backs off at every lost packet; BBR paces "
                   "at the bandwidth it measures", values=["cubic", "bbr", "reno"]),
             _knob("net.ipv4.tcp_notsent_lowat", "how much unsent data the sender queues beyond the window",
                   min=16384, max=4294967295, scale="log"),
             _knob("net.ipv4.tcp_slow_start_after_idle", "a connection idle for an RTO starts again from a small "
                   "window", values=["0", "1"])],
         "state_space": [{"metric": m} for m in ("net_tx_mb_per_s", "tcp_retrans_per_s", "cpu_util")],
         "initial_candidates": [_prior("buffers that cover the bandwidth-delay product several times over, "
                                       "BBR, no slow start after idle", **{
             "net.ipv4.tcp_rmem": "4096 131072 67108864", "net.ipv4.tcp_wmem": "4096 16384 67108864",
             "net.ipv4.tcp_congestion_control": "bbr", "net.ipv4.tcp_notsent_lowat": 4294967295,
             "net.ipv4.tcp_slow_start_after_idle": "0"})]},
        notes="Pairs the hosts two by two (h1 -> h2, h3 -> h4); an odd one out sits the run out. The link is "
              "emulated on each sender toward its partner only (node_agent/link.py) and removed at the end; on "
              "hosts already far apart, drop `peer.link` from the spec and measure the real path."),
    Workload(
        "stream", "Network throughput (bulk TCP transfer)",
        "built-in: 64 MiB TCP transfers over loopback, median of 3; reward: MB/s.",
        {"throughput": 2, "network throughput": 4, "bulk": 3, "transfer": 3, "bandwidth": 3, "download": 2,
         "upload": 2, "tcp buffer": 4, "rmem": 4, "wmem": 4, "stream": 3, "network": 2},
        {"reward_metric": "throughput_mb_s", "benchmark_command": "tunefleet-bench stream --mb 32 --rounds 3 "
                                                                  "--timeout 5",
         "benchmark_timeout": 60,
         "action_space": [
             _knob("net.ipv4.tcp_rmem", "receive buffer default and ceiling bound the TCP window",
                   min="4096 4096 4096", max="4096 131072 6291456"),
             _knob("net.ipv4.tcp_wmem", "send buffer default and ceiling bound data in flight",
                   min="4096 4096 4096", max="4096 65536 4194304")],
         "state_space": [{"metric": m} for m in ("net_rx_mb_per_s", "tcp_retrans_per_s", "cpu_util")],
         "initial_candidates": [_prior("the largest buffers this range allows: the window never limits a bulk "
                                       "transfer", **{"net.ipv4.tcp_rmem": "4096 131072 6291456",
                                                       "net.ipv4.tcp_wmem": "4096 65536 4194304"})]},
        notes="Loopback has no RTT: it shows the buffer effect, not what a long-distance path needs."),
)


def workloads() -> list[Workload]:
    return list(WORKLOADS)
