"""The strategy benchmark's workloads: real benchmarks on the local fleet, per-namespace knobs only
(the fleet's hosts share one kernel).

storm   a burst of 256 connections against the accept queue; the fleet starts at somaxconn 128, so
        every burst pays a 1 s SYN retransmit until somaxconn exceeds the burst: a step function.
        `--timeout 4` caps a hopeless setting (somaxconn 16 takes 20 s or more) at a failure.
stream  a loopback bulk transfer against tcp_rmem/tcp_wmem (two 3-number vectors, the first number
        fixed). The hosts start from small buffers (`4096 16384 32768`, about 350 MB/s here; set by
        the benchmark before the run, restored after it). Larger maxima help, and some combinations
        are pathological (a large receive buffer with a tiny send buffer crawls at ~2 MB/s):
        `--timeout 2` turns those into failures.
null    sysbench cpu: no network knob can change how fast one core finds primes. Any improvement a
        strategy claims here is a false claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CPU_NULL_COMMAND = "sysbench cpu --time=1 run"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    spec: dict
    null: bool = False                                  # no knob can matter: regret is undefined
    start: dict[str, str] = field(default_factory=dict)  # applied before the run, journaled originals restored after


STORM = Workload(
    key="storm",
    title="accept storm (256 clients; somaxconn, tcp_max_syn_backlog)",
    spec={
        "workload_name": "bench accept storm",
        "reward_metric": "elapsed_ms",
        "reward_goal": "minimize",
        "benchmark_command": "tunefleet-bench accept-storm --clients 256 --timeout 4",
        "benchmark_timeout": 30,
        "baseline_repeats": 3,
        "action_space": [
            {"param": "net.core.somaxconn", "min": 16, "max": 4096},
            {"param": "net.ipv4.tcp_max_syn_backlog", "min": 16, "max": 4096},
        ],
        "state_space": [{"metric": "tcp_listen_overflows"}, {"metric": "cpu_util"}],
    },
)

STREAM = Workload(
    key="stream",
    title="loopback stream (tcp_rmem, tcp_wmem from small buffers)",
    spec={
        "workload_name": "bench loopback stream",
        "reward_metric": "throughput_mb_s",
        "reward_goal": "maximize",
        "benchmark_command": "tunefleet-bench stream --mb 16 --rounds 2 --timeout 2",
        "benchmark_timeout": 30,
        "baseline_repeats": 3,
        "action_space": [
            {"param": "net.ipv4.tcp_rmem", "min": [4096, 4096, 16384], "max": [4096, 262144, 33554432]},
            {"param": "net.ipv4.tcp_wmem", "min": [4096, 4096, 16384], "max": [4096, 262144, 8388608]},
        ],
        "state_space": [{"metric": "net_rx_mb_per_s"}, {"metric": "cpu_util"}],
    },
    start={"net.ipv4.tcp_rmem": "4096 16384 32768", "net.ipv4.tcp_wmem": "4096 16384 32768"},
)

NULL = Workload(
    key="null",
    title="null: sysbench cpu (no knob matters)",
    spec={
        "workload_name": "bench null cpu",
        "reward_metric": "events_per_second",
        "reward_goal": "maximize",
        "benchmark_command": CPU_NULL_COMMAND,
        "benchmark_timeout": 30,
        "baseline_repeats": 3,
        "action_space": [
            {"param": "net.ipv4.tcp_fin_timeout", "min": 5, "max": 120},
            {"param": "net.ipv4.tcp_slow_start_after_idle", "min": 0, "max": 1},
        ],
        "state_space": [{"metric": "cpu_util"}],
    },
    null=True,
)

WORKLOADS = {w.key: w for w in (STORM, STREAM, NULL)}
