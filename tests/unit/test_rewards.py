"""Reward parsers on real captured outputs (tests/fixtures/bench/README.md says how), and the
reward a strategy sees: the log-ratio of a parsed result to the host's baseline."""

import math
from pathlib import Path

import pytest

from controller import rewards
from controller.errors import SpecError
from controller.learn.evaluation import FAILURE_REWARD, SOFT_BOUND, log_ratio, relative_reward
from controller.rewards import RewardParseError, change_pct

BENCH = Path(__file__).resolve().parents[1] / "fixtures" / "bench"


def out(name: str) -> str:
    return (BENCH / name).read_text()


@pytest.mark.parametrize("metric, fixture, expected", [
    # pgbench: the line without connection time, not the progress lines
    ("transactions_per_second", "pgbench.txt", 1519.657831),
    ("tps", "pgbench.txt", 1519.657831),
    ("tps", "pgbench_select_progress.txt", 27611.661964),
    # pgbench -C prints "(including reconnection times)" instead
    ("transactions_per_second", "pgbench_connect.txt", 213.533429),
    ("latency_avg_ms", "pgbench.txt", 2.632),
    # sysbench
    ("events_per_second", "sysbench_cpu.txt", 1012.10),
    ("latency_avg_ms", "sysbench_cpu.txt", 1.97),
    ("latency_p95_ms", "sysbench_cpu.txt", 5.28),
    ("events_per_second", "sysbench_fileio.txt", 206752 / 3.0003),  # fileio prints no events/s line
    ("latency_p95_ms", "sysbench_fileio.txt", 0.01),
    # HTTP load
    ("requests_per_second", "ab.txt", 1377.88),
    ("ab_requests_per_second", "ab.txt", 1377.88),
    ("latency_avg_ms", "ab.txt", 2.903),
    ("latency_p95_ms", "ab.txt", 9.0),
    ("requests_per_second", "wrk.txt", 1522.24),
    ("wrk_requests_per_second", "wrk_latency.txt", 1303.12),
    ("latency_avg_ms", "wrk.txt", 5.29),
    ("latency_p99_ms", "wrk_latency.txt", 51.12),
    # redis-benchmark --csv: the mean requests/s over its tests, the worst test's p99
    ("redis_requests_per_second", "redis_benchmark_csv.txt", (97560.98 + 103092.78) / 2),
    ("latency_p99_ms", "redis_benchmark_csv.txt", 1.247),
    # built-in benchmarks
    ("elapsed_ms", "tunefleet_accept_storm.txt", 1.522),
    ("throughput_mb_s", "tunefleet_stream.txt", 3638.289),
])
def test_known_metric_on_real_output(metric, fixture, expected):
    assert rewards.parse(metric, out(fixture)) == pytest.approx(expected, rel=1e-9)


def test_fio_json():
    text = out("fio_randrw.json")
    assert rewards.parse("fio_read_iops", text) == pytest.approx(27717.760746)
    assert rewards.parse("fio_write_iops", text) == pytest.approx(11866.711096)
    assert rewards.parse("fio_read_bw_kib", text) == pytest.approx(110871)
    assert rewards.parse("fio_read_lat_ms", text) == pytest.approx(30651.818288 / 1e6)
    seq = out("fio_seqwrite.json")
    assert rewards.parse("fio_write_bw_kib", seq) > 0
    assert rewards.parse("fio_write_iops", seq) == pytest.approx(36078.46077)


def test_fio_json_after_a_warning_line():
    text = "fio: this platform does not support process shared mutexes\n" + out("fio_randrw.json")
    assert rewards.parse("fio_read_iops", text) == pytest.approx(27717.760746)


def test_fio_sums_jobs():
    import json

    data = json.loads(out("fio_randrw.json"))
    data["jobs"] = data["jobs"] * 2
    assert rewards.parse("fio_read_iops", json.dumps(data)) == pytest.approx(2 * 27717.760746)
    # the I/O-weighted mean latency of two identical jobs is the latency of one
    assert rewards.parse("fio_read_lat_ms", json.dumps(data)) == pytest.approx(30651.818288 / 1e6)


def test_parsers_do_not_cross_tools():
    with pytest.raises(RewardParseError):
        rewards.parse("transactions_per_second", out("sysbench_cpu.txt"))
    with pytest.raises(RewardParseError):
        rewards.parse("elapsed_ms", out("tunefleet_stream.txt"))
    with pytest.raises(RewardParseError):
        rewards.parse("fio_read_iops", out("pgbench.txt"))
    with pytest.raises(RewardParseError):
        rewards.parse("wrk_requests_per_second", out("ab.txt"))


def test_default_goals():
    assert rewards.default_goal("transactions_per_second") == "maximize"
    assert rewards.default_goal("elapsed_ms") == "minimize"
    assert rewards.default_goal("throughput_mb_s") == "maximize"
    assert rewards.default_goal("latency_p95_ms") == "minimize"
    assert rewards.default_goal("fio_write_lat_ms") == "minimize"
    assert rewards.default_goal("requests_per_second") == "maximize"


def test_no_match_quotes_the_tail():
    with pytest.raises(RewardParseError) as e:
        rewards.parse("tps", out("pgbench_refused.txt"))
    msg = str(e.value)
    assert "tps" in msg and "could not create connection for setup" in msg
    assert "\n" not in msg
    assert isinstance(e.value, SpecError)


def test_empty_output():
    with pytest.raises(RewardParseError, match="printed nothing"):
        rewards.parse("tps", "  \n")


def test_long_output_is_shortened_in_the_message():
    with pytest.raises(RewardParseError) as e:
        rewards.parse("elapsed_ms", "x" * 5000 + "\nthe end")
    assert len(str(e.value)) < 400 and "the end" in str(e.value)


def test_custom_pattern_takes_the_last_match():
    text = "progress: 10 ops\nprogress: 12 ops\nresult: 1,234.5 ops/s\n"
    assert rewards.parse("my_metric", text, r"result: ([0-9,.]+) ops/s") == pytest.approx(1234.5)
    assert rewards.parse("my_metric", text, r"progress: (\d+)") == 12


def test_bad_patterns():
    with pytest.raises(ValueError, match="group"):
        rewards.compile_pattern(r"tps = \d+")
    with pytest.raises(ValueError, match="regular expression"):
        rewards.compile_pattern(r"tps = (\d+")


def test_unknown_metric_names_the_known_ones():
    with pytest.raises(SpecError) as e:
        rewards.parse("bogomips", "whatever")
    assert "transactions_per_second" in str(e.value) and "reward_pattern" in str(e.value)


def test_pgbench_before_14_prefers_excluding_connections():
    # pgbench <= 13 prints both lines; the one without connection setup is the workload's rate
    text = ("tps = 1480.112233 (including connections establishing)\n"
            "tps = 1502.998877 (excluding connections establishing)\n")
    assert rewards.parse("tps", text) == pytest.approx(1502.998877)


# --- the reward a strategy sees: log-ratio to the host's baseline ----------------------------

def test_reward_is_the_log_ratio_and_symmetric_for_both_goals():
    assert relative_reward(100.0, 100.0, "maximize") == 0.0
    assert relative_reward(200.0, 100.0, "maximize") == pytest.approx(math.log(2))
    assert relative_reward(50.0, 100.0, "minimize") == pytest.approx(math.log(2))  # half the latency
    assert relative_reward(50.0, 100.0, "maximize") == pytest.approx(-relative_reward(200.0, 100.0, "maximize"))


def test_reward_does_not_saturate_above_the_baseline():
    # 20x, 100x and 550x are told apart (a clip at +500% scored them all the same)
    r20, r100, r550 = (relative_reward(x, 1.0, "maximize") for x in (20.0, 100.0, 550.0))
    assert r20 < r100 < r550 and r100 - r20 == pytest.approx(math.log(5))
    # nor does it compress for a minimized metric: 1030 ms -> 12 ms and -> 8 ms are a clear step apart
    assert relative_reward(8.0, 1030.0, "minimize") - relative_reward(12.0, 1030.0, "minimize") == \
        pytest.approx(math.log(1.5))


def test_outliers_are_tamed_softly_far_out():
    inside = relative_reward(9e3, 1.0, "maximize")
    assert inside == pytest.approx(math.log(9e3))  # untouched up to 10^4 times the baseline
    far, farther = relative_reward(1e6, 1.0, "maximize"), relative_reward(1e12, 1.0, "maximize")
    assert SOFT_BOUND < far < farther < 2 * SOFT_BOUND  # still ordered, bounded
    assert relative_reward(0.0, 1.0, "maximize") == pytest.approx(-2 * SOFT_BOUND)  # a zero is bounded too
    assert relative_reward(0.0, 5.0, "minimize") == pytest.approx(2 * SOFT_BOUND)


def test_a_failure_scores_below_any_normal_measurement_and_is_bounded():
    worst_real = relative_reward(1030.0 * 1000, 1030.0, "minimize")  # a storm 1000x slower than the original
    assert -2 * SOFT_BOUND < FAILURE_REWARD < worst_real < 0


def test_change_pct_is_the_raw_metrics_change_not_the_reward():
    assert change_pct(550.0, 1.0, "maximize") == pytest.approx(54900.0)
    assert change_pct(12.0, 1030.0, "minimize") == pytest.approx((1 - 12 / 1030) * 100)
    assert change_pct(1.0, 0.0, "maximize") is None
    assert log_ratio(10.0, 1.0, "maximize") == pytest.approx(math.log(10))
