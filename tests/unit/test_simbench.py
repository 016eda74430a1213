"""The simulated-fleet strategy benchmark in its quick mode: the machinery end to end, and a
difference it must see (bo against random search on 4-knob members at budget 24)."""

from __future__ import annotations

import pytest

from bench import simbench, simreport


def test_quick_benchmark_tells_bo_from_random(tmp_path):
    args = simbench.parse_args(["--quick", "--jobs", "1"])
    data = simbench.collect(args)
    assert {(r["label"], r["budget"]) for r in data["runs"]} == {("random", 24), ("bo", 24)}
    assert all(r["evaluations"] == 24 and 0.0 <= r["regret"] <= 1.0 for r in data["runs"])
    table = simreport.summarize(data)
    bo, rnd = table["cells"]["bo"][24], table["cells"]["random"][24]
    assert bo["n"] == rnd["n"] == 6 and bo["low"] <= bo["mean"] <= bo["high"]
    diff = simreport.paired(data, "bo", "random", 24)
    assert diff["mean"] < -0.15 and diff["high"] < 0, diff  # bo's advantage, supported by its interval

    out = tmp_path / "benchmarks.md"
    out.write_text("# page\n\n<!-- section:other -->\nkept\n<!-- /section:other -->\n")
    json_path = tmp_path / "benchmarks-sim.json"
    simreport.write_section(data, table, out, json_path, simbench.HELD_OUT)
    text = out.read_text()
    assert "kept" in text and "## Strategies on the simulated fleet" in text and "| bo | " in text
    assert (tmp_path / "benchmarks-sim.png").stat().st_size > 1000


def test_probe_measures_the_queue_rule_on_the_newest_policy(tmp_path):
    """The probe reads the policy a held-out run would start from (the store's newest: training
    members' own workload names would find their own, older policy) and measures the expert rule
    on steps that overflow: a policy trained on four members raises the queue after nearly all."""
    pytest.importorskip("stable_baselines3")
    store = str(tmp_path / "policies")
    simbench.train(2, 4, 48, store)
    p = simbench.probe(2, store, members=10)
    assert p["overflowing_steps"] >= 100 and p["raised"] >= 0.8, p
    assert p["action_at_originals"][0] > 0.5, p  # somaxconn well above the middle of its range
    # the action it reports is the newest policy's, not the first training run's
    import numpy as np
    from stable_baselines3 import PPO

    from controller.learn import features
    from controller.learn.policystore import PolicyStore
    from controller.learn.simfleet import member

    ps = PolicyStore(store)
    newest = max(ps.entries(), key=lambda e: e.created)
    obs = np.concatenate([member(simbench.HELD_OUT, 2).spec().to_unit(member(simbench.HELD_OUT, 2).originals),
                          np.zeros(features.SIZE + 1)]).astype(np.float32)
    action = PPO.load(str(newest.path(ps.root)), device="cpu").predict(obs, deterministic=True)[0]
    assert p["action_at_originals"] == [round(float(x), 3) for x in action]


def test_a_policy_trained_across_the_family_beats_bo_cold_on_held_out_members(tmp_path):
    """The transfer target in small: PPO trained on 32 members of the 4-knob family (two training
    runs, each a fleet of 16 different members) then started on 8 held-out members at budget 12,
    paired with bo started cold on the same members and seeds. Fails when the policy never updates
    (it is then the initial Gaussian: about 0.75 here)."""
    pytest.importorskip("stable_baselines3")
    store = str(tmp_path / "policies")
    simbench.train(4, 32, 48, store, per_run=16)
    ppo = [simbench.run_one("ppo trained", 4, simbench.HELD_OUT + s, 12, s, store)["regret"] for s in range(8)]
    bo = [simbench.run_one("bo", 4, simbench.HELD_OUT + s, 12, s, store)["regret"] for s in range(8)]
    mean = sum(ppo) / len(ppo)
    assert mean < 0.3 and mean < sum(bo) / len(bo) - 0.15, (ppo, bo)
    assert sum(p < b for p, b in zip(ppo, bo)) >= 5, (ppo, bo)


def test_held_out_members_are_never_training_members():
    """A policy judged on members it was trained on would overstate the transfer: the default
    training set ends before the first held-out member, and a larger one is refused."""
    args = simbench.parse_args([])
    assert args.train <= simbench.HELD_OUT
    with pytest.raises(SystemExit):
        simbench.parse_args(["--train", str(simbench.HELD_OUT + 1)])


def test_the_knob_count_table_splits_each_cell_by_its_members_knobs():
    runs = [{"label": "bo", "budget": b, "dims": d, "seed": s, "regret": r}
            for b, d, s, r in [(24, 2, 0, 0.0), (24, 8, 1, 0.4), (24, 2, 2, 0.2), (24, 8, 3, 0.6), (12, 2, 4, 0.9)]]
    data = {"settings": {"cells": ["bo"], "budgets": [12, 24], "dims": [2, 8]}, "runs": runs}
    assert simreport.by_knobs(data, 24) == {"bo": {2: {"mean": 0.1, "n": 2}, 8: {"mean": 0.5, "n": 2}}}
    lines = simreport._by_knobs_lines(data)
    assert "| bo | 0.100 | 0.500 |" in lines and any("budget 24" in line and "2 seeds each" in line for line in lines)
