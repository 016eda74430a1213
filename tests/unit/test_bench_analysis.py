"""The strategy benchmark's arithmetic: round-wise best-so-far, normalized regret, false claims."""

from __future__ import annotations

import pytest

from bench.analysis import best_so_far, regret, regret_scale, summarize
from controller.learn.ppo import steps_per_update


def t(reward, ok=True):
    return {"reward": reward, "ok": ok, "host": "h", "values": {}}


def test_best_so_far_counts_whole_rounds_and_failures_at_the_floor():
    search = [t(0.1), t(None, ok=False), t(0.5), t(0.2), t(0.9), t(0.3)]
    assert best_so_far(search, budget=6, hosts=3) == [0.5, 0.9]
    assert best_so_far([t(None, ok=False)] * 2, budget=2, hosts=2) == [-1.0]
    assert best_so_far(search[:4], budget=6, hosts=2) == [0.1, 0.5, 0.5]  # a short run keeps its best


def verification(base, best):
    return {"baseline_median": base, "best_median": best, "change_pct": 0.0, "significant": False}


def test_regret_maximize_and_minimize():
    runs = [{"verification": verification(100, 300)}, {"verification": verification(110, 200)},
            {"verification": verification(90, 250)}]
    scale = regret_scale(runs, "maximize")
    assert scale == (300, 100)  # f* the best chosen median, f0 the pooled original median
    assert [regret(r, scale, "maximize") for r in runs] == [0.0, 0.5, 0.25]
    assert regret({"verification": None}, scale, "maximize") == 1.0

    lat = [{"verification": verification(1000, 10)}, {"verification": verification(1020, 110)}]
    scale = regret_scale(lat, "minimize")
    assert regret(lat[0], scale, "minimize") == 0.0
    assert regret(lat[1], scale, "minimize") == pytest.approx(100 / (1010 - 10))
    assert regret_scale([{"verification": verification(100, 90)}], "maximize") is None  # nothing beat the original


def test_summary_counts_false_claims_on_the_null_workload():
    def run(strategy, seed, success, wl="null"):
        return {"workload": wl, "strategy": strategy, "seed": seed, "role": "run", "budget": 2, "hosts": ["h1", "h2"],
                "search": [t(0.01), t(0.03)], "success": success, "best_seen_pct": 3.0, "seconds": 1.0,
                "verification": verification(100, 101), "confirm": None, "best_config": {}}

    data = {"workloads": {"null": {"title": "null", "null": True, "spec": {"reward_metric": "x"}, "start": {}}},
            "runs": [run("bo", 0, False), run("bo", 1, True), run("random", 0, False)]}
    s = summarize(data)["null"]
    assert s["rows"]["bo"]["claims"] == 1 and s["rows"]["random"]["claims"] == 0
    assert "regret_mean" not in s["rows"]["bo"]


def test_small_budgets_update_the_policy_every_round():
    assert steps_per_update(4) == 1     # 12 evaluations on 3 hosts
    assert steps_per_update(8) == 2
    assert steps_per_update(40) == 4
    assert steps_per_update(1) == 1
