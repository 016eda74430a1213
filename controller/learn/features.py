"""The metric feature vector of one evaluation: what the host's kernel did while the benchmark ran.

The agent streams a metrics sample every second of a benchmark (``sample`` events) and ends the
run with a summary over the whole run (docs/protocol.md, Metrics). An evaluation's features are
aggregates of both, each relative to the same host's baseline runs, so a feature means the same
on a big host and a small one:

    feature = tanh(ln((1 + value) / (1 + baseline value)) / SCALE)

0 is "as in the baseline", +0.76 about e^2 = 7.4 times more, -0.76 about 7.4 times less, and the
squash keeps a counter that goes from 0 to 100000 inside [-1, 1]. ``mean`` is the agent's
whole-run figure (a rate or count over the run, a gauge averaged over every sample), ``max`` the
peak of the per-second samples (the run's figure when no sample arrived: runs under a second),
``sum`` a counter's increase over the whole run.

The vector has the same names, order and length whatever the spec lists in ``state_space`` and
whatever the host offers (a metric the host does not have, such as PSI without /proc/pressure, is
0): a policy trained on one spec or host can act on another. ``state_space`` entries are checked
against the metrics the agent reads (controller/statemetrics.py), never silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


SCALE = 2.0

# (feature name, agent metric, aggregate), in the vector's order. Never reorder: saved policies
# read their observations by position. New features go at the end (and change the vector's length,
# which the policy store checks).
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("cpu_util.mean", "cpu_util", "mean"),
    ("cpu_util.max", "cpu_util", "max"),
    ("cpu_system.mean", "cpu_system", "mean"),
    ("cpu_iowait.mean", "cpu_iowait", "mean"),
    ("cpu_iowait.max", "cpu_iowait", "max"),
    ("psi_cpu_some.max", "psi_cpu_some", "max"),
    ("psi_io_some.max", "psi_io_some", "max"),
    ("psi_io_full.max", "psi_io_full", "max"),
    ("psi_mem_some.max", "psi_mem_some", "max"),
    ("psi_mem_full.max", "psi_mem_full", "max"),
    ("ctxt_per_s.mean", "ctxt_per_s", "mean"),
    ("procs_running.max", "procs_running", "max"),
    ("mem_used_pct.mean", "mem_used_pct", "mean"),
    ("tcp_retrans_per_s.mean", "tcp_retrans_per_s", "mean"),
    ("tcp_active_opens_per_s.mean", "tcp_active_opens_per_s", "mean"),
    ("tcp_passive_opens_per_s.mean", "tcp_passive_opens_per_s", "mean"),
    ("tcp_listen_overflows.sum", "tcp_listen_overflows", "sum"),
    ("tcp_listen_drops.sum", "tcp_listen_drops", "sum"),
    ("tcp_backlog_drops.sum", "tcp_backlog_drops", "sum"),
    ("net_rx_mb_per_s.mean", "net_rx_mb_per_s", "mean"),
    ("net_tx_mb_per_s.mean", "net_tx_mb_per_s", "mean"),
)
NAMES: tuple[str, ...] = tuple(name for name, _, _ in FEATURES)
SIZE = len(FEATURES)

def aggregate(samples: Sequence[Mapping[str, float]], run: Mapping[str, float]) -> dict[str, float]:
    """Absolute aggregates of one benchmark run: ``samples`` are the per-second metrics the agent
    streamed, ``run`` its whole-run summary. Only metrics the host reported appear."""
    out = {}
    for name, metric, how in FEATURES:
        if how == "max":
            seen = [float(s[metric]) for s in samples if metric in s]
            if not seen and metric in run:
                seen = [float(run[metric])]
            if seen:
                out[name] = max(seen)
        elif metric in run:
            out[name] = float(run[metric])
    return out


def mean_aggregates(runs: list[Mapping[str, float]]) -> dict[str, float]:
    """The baseline reference: each aggregate averaged over the baseline runs that have it."""
    keys = set().union(*runs) if runs else set()
    return {k: sum(r[k] for r in runs if k in r) / sum(1 for r in runs if k in r) for k in keys}


def relative(aggregates: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, float]:
    """The named features of one run against the host's baseline (rounded: they go to trials.jsonl)."""
    out = {}
    for name in NAMES:
        if name in aggregates and name in baseline:
            value, base = max(aggregates[name], 0.0), max(baseline[name], 0.0)
            out[name] = round(math.tanh((math.log1p(value) - math.log1p(base)) / SCALE), 4)
    return out


def vector(features: Mapping[str, float] | None) -> np.ndarray:
    """The named features as the fixed-order vector a policy sees; absent ones are 0."""
    import numpy as np  # here: the host side (a Ray actor) aggregates features without numpy's ~11 MiB

    features = features or {}
    return np.asarray([float(features.get(name, 0.0)) for name in NAMES], dtype=np.float64)
