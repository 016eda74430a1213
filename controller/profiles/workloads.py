"""Which shipped profiles an administrator would reach for, per tunefleet workload.

Keys are the built-in workloads (controller/strategist/builtin.py) and the ones planned next to
them. Each list is most specific first: the server's own documentation, then TuneD's profile for
that server, then the TuneD family the workload belongs to (throughput or latency for databases
and web servers, network-throughput for bulk transfers). ``virtual-guest`` is listed where the
disk matters, since tunefleet's fleets are often VMs and that is what TuneD recommends on them.
"""

from __future__ import annotations

_DATABASE = ["tuned:postgresql", "tuned:throughput-performance", "tuned:latency-performance",
             "tuned:virtual-guest"]
_WEB = ["tuned:throughput-performance", "tuned:network-latency", "tuned:latency-performance",
        "tuned:network-throughput"]

WORKLOADS: dict[str, list[str]] = {
    # PostgreSQL: TPC-B-like transactions, read-only selects, a new connection per transaction
    "pg-oltp": ["postgresql:docs", *_DATABASE],
    "pg-select": ["postgresql:docs", *_DATABASE],
    "pg-connect": ["postgresql:docs", "tuned:postgresql", "tuned:throughput-performance", "tuned:network-latency",
                   "tuned:latency-performance"],
    # web servers: a new connection per request (web, nginx) or long-lived ones (nginx-keepalive)
    "web": _WEB,
    "nginx": _WEB,
    "nginx-keepalive": ["tuned:network-latency", "tuned:throughput-performance", "tuned:latency-performance",
                        "tuned:network-throughput"],
    "connection-storm": ["tuned:throughput-performance", "tuned:network-latency", "tuned:latency-performance"],
    "redis": ["redis:docs", "tuned:throughput-performance", "tuned:latency-performance", "tuned:network-latency"],
    # a null workload: no profile should move it, which is worth showing
    "cpu": ["tuned:throughput-performance", "tuned:latency-performance"],
    "fileio": ["tuned:throughput-performance", "tuned:latency-performance", "tuned:virtual-guest",
               "tuned:postgresql"],
    # bulk TCP transfers: over loopback (stream) or a link between hosts (link)
    "stream": ["tuned:network-throughput", "tuned:throughput-performance"],
    "link": ["tuned:network-throughput", "tuned:throughput-performance", "tuned:network-latency"],
}
