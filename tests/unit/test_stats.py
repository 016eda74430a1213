"""Statistics on synthetic samples whose true answer is known (pgbench-like: CV 3 %)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from controller.learn.stats import (
    Comparison,
    fleet_change,
    interleaved_schedule,
    noise_warning,
    relative_change,
    summarize,
)

KEYS = {
    "baseline_median", "best_median", "change_pct", "ci_low_pct", "ci_high_pct",
    "p_value", "significant", "repeats", "goal", "verdict",
}


def noisy(rng: np.random.Generator, level: float, n: int, cv: float = 0.03) -> np.ndarray:
    return rng.normal(level, level * cv, n)


def test_summarize():
    s = summarize([10.0, 12.0, 11.0, 13.0])
    assert (s.n, s.median, s.mean, s.min, s.max) == (4, 11.5, 11.5, 10.0, 13.0)
    assert s.stdev == pytest.approx(np.std([10, 12, 11, 13], ddof=1))
    assert s.cv == pytest.approx(s.stdev / 11.5)
    assert set(s.to_dict()) == {"n", "median", "mean", "stdev", "cv", "min", "max"}
    one = summarize([5.0])
    assert (one.stdev, one.cv) == (0.0, 0.0)
    with pytest.raises(ValueError):
        summarize([])


def test_true_ten_percent_effect_is_found():
    rng = np.random.default_rng(1)
    found = covered = 0
    trials = 60
    for seed in range(trials):
        base, cand = noisy(rng, 1000, 10), noisy(rng, 1100, 10)
        c = relative_change(base, cand, n_boot=1000, seed=seed)
        assert c.change_pct == pytest.approx((np.median(cand) / np.median(base) - 1) * 100)
        assert c.repeats == 10
        found += c.significant and c.verdict == "improvement" and c.p_value < 0.05
        covered += c.ci_low_pct <= 10 <= c.ci_high_pct
    assert found == trials
    assert covered / trials >= 0.88  # a 95 % interval; measured about 0.95


def test_to_dict_is_exact_and_json_ready():
    rng = np.random.default_rng(2)
    d = relative_change(noisy(rng, 100, 5), noisy(rng, 100, 5), n_boot=500).to_dict()
    assert set(d) == KEYS
    assert type(d["significant"]) is bool and type(d["repeats"]) is int
    assert json.loads(json.dumps(d)) == d


def test_null_false_positive_rate_is_controlled():
    rng = np.random.default_rng(7)
    trials = 200
    hits = sum(
        relative_change(noisy(rng, 500, 10), noisy(rng, 500, 10), n_boot=400, seed=s).significant
        for s in range(trials)
    )
    assert hits / trials <= 0.07


def test_regression_and_minimize_sign():
    rng = np.random.default_rng(4)
    base, slower = noisy(rng, 1000, 10), noisy(rng, 900, 10)
    assert relative_change(base, slower, n_boot=2000).verdict == "regression"
    # Latency: 20 ms -> 18 ms is 10 % better, reported positive.
    lat_base, lat_cand = noisy(rng, 20.0, 10), noisy(rng, 18.0, 10)
    c = relative_change(lat_base, lat_cand, goal="minimize", n_boot=2000)
    assert c.goal == "minimize" and c.verdict == "improvement"
    assert c.change_pct == pytest.approx((1 - np.median(lat_cand) / np.median(lat_base)) * 100)
    assert c.ci_low_pct > 0 and c.ci_low_pct <= 10 <= c.ci_high_pct
    assert relative_change(lat_cand, lat_base, goal="minimize", n_boot=2000).verdict == "regression"


def test_deterministic_given_seed():
    rng = np.random.default_rng(5)
    base, cand = noisy(rng, 100, 6), noisy(rng, 104, 6)
    assert relative_change(base, cand, seed=9) == relative_change(base, cand, seed=9)
    assert relative_change(base, cand, seed=9) != relative_change(base, cand, seed=10)


def test_tiny_samples_are_never_significant():
    one = relative_change([100.0], [150.0], n_boot=200)
    assert one.ci_low_pct == one.ci_high_pct == pytest.approx(50.0)
    assert one.p_value == 1.0 and not one.significant and one.verdict == "no significant change"
    # Three constants per arm: no split of six values reaches p < 0.05 (exact p = 0.1).
    three = relative_change([100.0] * 3, [110.0] * 3, n_boot=200)
    assert three.p_value == pytest.approx(0.1) and not three.significant


def test_constant_samples():
    same = relative_change([100.0] * 8, [100.0] * 8, n_boot=500)
    assert (same.ci_low_pct, same.ci_high_pct, same.change_pct) == (0.0, 0.0, 0.0)
    assert same.p_value == 1.0 and not same.significant
    apart = relative_change([100.0] * 8, [110.0] * 8, n_boot=500)
    assert apart.ci_low_pct == pytest.approx(10.0) == apart.ci_high_pct
    assert apart.significant and apart.verdict == "improvement"


def test_bad_input():
    with pytest.raises(ValueError):
        relative_change([], [1.0])
    with pytest.raises(ValueError):
        relative_change([1.0, float("nan")], [1.0])
    with pytest.raises(ValueError):
        relative_change([0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError):
        relative_change([1.0], [1.0], goal="fastest")  # type: ignore[arg-type]


def test_fleet_pools_hosts_of_different_speed():
    rng = np.random.default_rng(11)
    levels = {"vm1": 200.0, "vm2": 1000.0, "vm3": 5000.0}
    per_host = {h: (noisy(rng, v, 6), noisy(rng, v * 1.05, 6)) for h, v in levels.items()}
    c = fleet_change(per_host, n_boot=2000)
    assert isinstance(c, Comparison) and c.verdict == "improvement"
    assert c.ci_low_pct <= 5 <= c.ci_high_pct
    ratios = [np.median(cand) / np.median(base) for base, cand in per_host.values()]
    assert c.change_pct == pytest.approx((np.exp(np.mean(np.log(ratios))) - 1) * 100)
    assert c.repeats == 18
    assert c.baseline_median == pytest.approx(np.median([np.median(b) for b, _ in per_host.values()]))
    # Same data, other dict order: same answer.
    assert fleet_change(dict(reversed(per_host.items())), n_boot=2000) == c


def test_fleet_is_stronger_than_each_host_and_null_stays_null():
    rng = np.random.default_rng(12)
    per_host = {f"vm{i}": (noisy(rng, 100 * (i + 1), 5), noisy(rng, 103 * (i + 1), 5)) for i in range(6)}
    fleet = fleet_change(per_host, n_boot=2000)
    widths = [relative_change(b, c, n_boot=2000).ci_high_pct - relative_change(b, c, n_boot=2000).ci_low_pct
              for b, c in per_host.values()]
    assert fleet.ci_high_pct - fleet.ci_low_pct < min(widths)
    assert fleet.verdict == "improvement"
    hits = sum(
        fleet_change({f"vm{i}": (noisy(rng, 100, 5), noisy(rng, 100, 5)) for i in range(3)}, n_boot=300,
                     seed=s).significant
        for s in range(60)
    )
    assert hits <= 5


def test_fleet_minimize_and_single_host():
    rng = np.random.default_rng(13)
    base, cand = noisy(rng, 20.0, 8), noisy(rng, 17.0, 8)
    fleet = fleet_change({"only": (base, cand)}, goal="minimize", n_boot=1000)
    assert fleet.change_pct == pytest.approx(relative_change(base, cand, goal="minimize").change_pct)
    assert fleet.verdict == "improvement"
    # One host: the same small-sample rank test as relative_change.
    assert fleet_change({"only": ([100.0] * 3, [110.0] * 3)}, n_boot=200).p_value == pytest.approx(0.1)
    with pytest.raises(ValueError):
        fleet_change({})


def test_interleaved_schedule():
    assert interleaved_schedule(3) == ["A", "B", "B", "A", "A", "B"]
    assert interleaved_schedule(2, first="B") == ["B", "A", "A", "B"]
    assert interleaved_schedule(0) == []
    with pytest.raises(ValueError):
        interleaved_schedule(2, first="C")  # type: ignore[arg-type]


def test_noise_warning():
    rng = np.random.default_rng(14)
    quiet = summarize(noisy(rng, 1000, 10, cv=0.005))
    assert noise_warning(quiet, min_effect_pct=5.0) is None
    loud = summarize(noisy(rng, 1000, 5, cv=0.05))
    msg = noise_warning(loud, min_effect_pct=3.0)
    assert msg is not None and "repeats per arm" in msg and "3%" in msg
    assert noise_warning(summarize([100.0]), min_effect_pct=5.0) is not None
    # More planned repeats lower the detectable effect.
    pg = summarize(noisy(rng, 1000, 10, cv=0.03))
    assert noise_warning(pg, 4.0, repeats=5) is not None
    assert noise_warning(pg, 4.0, repeats=30) is None


@pytest.mark.parametrize("repeats", [2, 4, 6])
def test_a_steady_drift_favours_neither_arm(repeats):
    """A benchmark that speeds up by one unit per run (a machine warming up) with no knob effect:
    the schedule must leave the arms' mean positions, hence their means, equal. Run A then B
    alternately, B would gain a whole unit on every host."""
    for first in ("A", "B"):
        order = interleaved_schedule(repeats, first=first)
        position = {arm: [i for i, label in enumerate(order) if label == arm] for arm in "AB"}
        assert len(position["A"]) == len(position["B"]) == repeats
        assert sum(position["A"]) == sum(position["B"]), order
