"""The metrics the agent reads during a benchmark, and where: what a spec's ``state_space`` may name.

A spec lists the metrics it observes (the seed's ``state_space``); each entry must be one the agent
reads (node_agent/metrics.py), by its name or the seed's, and a ``source``, when given, must be the
file the agent reads it from. Checked when the spec loads, never silently ignored (the feature
vector, controller/learn/features.py, takes a fixed set of these metrics whatever the spec lists).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Where the agent reads each metric (node_agent/metrics.py). A state_space `source` must name it.
SOURCES: dict[str, str] = {
    **{m: "/proc/stat" for m in ("cpu_util", "cpu_user", "cpu_system", "cpu_iowait", "cpu_steal",
                                 "ctxt_per_s", "procs_running")},
    "load1": "/proc/loadavg",
    "mem_used_pct": "/proc/meminfo", "mem_available_mb": "/proc/meminfo",
    "psi_cpu_some": "/proc/pressure/cpu",
    "psi_io_some": "/proc/pressure/io", "psi_io_full": "/proc/pressure/io",
    "psi_mem_some": "/proc/pressure/memory", "psi_mem_full": "/proc/pressure/memory",
    **{m: "/proc/net/snmp" for m in ("tcp_retrans_per_s", "tcp_active_opens_per_s", "tcp_passive_opens_per_s")},
    **{m: "/proc/net/netstat" for m in ("tcp_listen_overflows", "tcp_listen_drops", "tcp_backlog_drops")},
    "net_rx_mb_per_s": "/proc/net/dev", "net_tx_mb_per_s": "/proc/net/dev",
}

# The seed's metric names -> the agent's.
ALIASES = {
    "cpu_utilization": "cpu_util", "cpu_usage": "cpu_util", "io_wait": "cpu_iowait", "iowait": "cpu_iowait",
    "mem_utilization": "mem_used_pct", "memory_utilization": "mem_used_pct", "mem_pressure": "psi_mem_some",
    "memory_pressure": "psi_mem_some", "io_pressure": "psi_io_some", "cpu_pressure": "psi_cpu_some",
    "context_switches": "ctxt_per_s", "load_average": "load1", "tcp_retransmits": "tcp_retrans_per_s",
    "listen_overflows": "tcp_listen_overflows", "listen_drops": "tcp_listen_drops",
    "backlog_drops": "tcp_backlog_drops",
}


def check_state_space(items: Iterable[Any]) -> list[tuple[int, str, str]]:
    """(index, field, problem) per state_space entry naming a metric the agent does not read, or a
    `source` other than the file the agent reads it from ('proc/net/netstat/' is the same file)."""
    problems = []
    for i, item in enumerate(items):
        metric = item.metric if hasattr(item, "metric") else item.get("metric")
        source = item.source if hasattr(item, "source") else item.get("source")
        name = ALIASES.get(metric, metric)
        if name not in SOURCES:
            problems.append((i, "metric", f"{metric!r} is not a metric the agent reads "
                                          f"(known: {', '.join(sorted(SOURCES))})"))
        elif source is not None and "/" + str(source).strip().strip("/") != SOURCES[name]:
            problems.append((i, "source", f"the agent reads {metric} from {SOURCES[name]}, not {source!r}"))
    return problems
