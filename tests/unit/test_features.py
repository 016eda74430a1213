"""The metric feature vector: aggregates of the streamed samples, relative to the host's baseline,
in one fixed order whatever the spec lists; state_space checked, never ignored."""

import math

import numpy as np
import pytest

from controller import statemetrics
from controller.errors import SpecError
from controller.learn import features
from controller.spec import TuningSpec
from tests.unit import surface


def test_aggregates_take_peaks_from_samples_and_totals_from_the_run():
    samples = [{"cpu_util": 20.0, "psi_io_some": 1.0}, {"cpu_util": 90.0, "psi_io_some": 4.0}, {"cpu_util": 40.0}]
    run = {"cpu_util": 50.0, "tcp_listen_overflows": 300.0, "psi_io_some": 2.0}
    agg = features.aggregate(samples, run)
    assert agg["cpu_util.mean"] == 50.0 and agg["cpu_util.max"] == 90.0
    assert agg["psi_io_some.max"] == 4.0
    assert agg["tcp_listen_overflows.sum"] == 300.0
    assert "psi_mem_full.max" not in agg  # a metric the host does not report is absent, not 0
    # a run shorter than the sampling interval: the run's figure stands in for the peak
    assert features.aggregate([], run)["cpu_util.max"] == 50.0


def test_features_are_relative_to_the_baseline_and_the_same_on_big_and_small_hosts():
    small = features.relative({"ctxt_per_s.mean": 2_000.0}, {"ctxt_per_s.mean": 1_000.0})
    big = features.relative({"ctxt_per_s.mean": 200_000.0}, {"ctxt_per_s.mean": 100_000.0})
    assert small["ctxt_per_s.mean"] == pytest.approx(big["ctxt_per_s.mean"], abs=1e-3)
    assert small["ctxt_per_s.mean"] == pytest.approx(math.tanh(math.log(2) / features.SCALE), abs=1e-3)
    same = features.relative({"cpu_util.mean": 40.0}, {"cpu_util.mean": 40.0})
    assert same["cpu_util.mean"] == 0.0
    storm = features.relative({"tcp_listen_overflows.sum": 1e6}, {"tcp_listen_overflows.sum": 0.0})
    assert 0.99 < storm["tcp_listen_overflows.sum"] <= 1.0  # squashed, never beyond 1


def test_the_vector_has_one_order_and_length_whatever_is_present():
    v = features.vector({"tcp_listen_overflows.sum": 0.5, "unknown": 9.0})
    assert v.shape == (features.SIZE,) and v[features.NAMES.index("tcp_listen_overflows.sum")] == 0.5
    assert np.count_nonzero(v) == 1
    assert features.vector(None).shape == (features.SIZE,)
    assert len(set(features.NAMES)) == features.SIZE
    # every feature reads a metric whose source the state_space check knows
    assert {m for _, m, _ in features.FEATURES} <= set(statemetrics.SOURCES)


def test_state_space_sources_are_honoured_or_refused():
    base = {"workload_name": "w", "reward_metric": "tps", "benchmark_command": "pgbench -T 5 pgbench",
            "action_space": [{"param": "net.core.somaxconn", "min": 16, "max": 4096}]}
    ok = TuningSpec.from_dict({**base, "state_space": [
        {"metric": "cpu_utilization", "source": "/proc/stat"},
        {"metric": "tcp_listen_overflows", "source": "/proc/net/netstat"},
        {"metric": "psi_io_full"}]})
    assert len(ok.state_space) == 3
    with pytest.raises(SpecError, match=r"state_space\[0\]\.source: the agent reads cpu_utilization from /proc/stat"):
        TuningSpec.from_dict({**base, "state_space": [{"metric": "cpu_utilization", "source": "/proc/meminfo"}]})
    with pytest.raises(SpecError, match=r"state_space\[1\]\.metric: 'disk_magic' is not a metric"):
        TuningSpec.from_dict({**base, "state_space": [{"metric": "cpu_util"}, {"metric": "disk_magic"}]})


def test_each_evaluation_records_its_streamed_samples_as_features():
    host = surface.SurfaceHost("h1")
    ctx = surface.context([host], surface.spec(), budget=2)
    ev = ctx.evaluators["h1"]
    short = ev.evaluate({k: "1" for k in surface.KNOBS})            # the queue as short as the baseline's
    fixed = ev.evaluate({k: "1000000" for k in surface.KNOBS})      # no shortfall: no overflows
    assert short.samples == 3 and fixed.samples == 3
    assert short.features["tcp_listen_overflows.sum"] == 0.0         # as in the baseline
    assert fixed.features["tcp_listen_overflows.sum"] < -0.9         # orders of magnitude fewer
    assert "aggregates" not in fixed.to_dict() and fixed.to_dict()["features"] == fixed.features
