"""Every strategy end to end on the local fleet, and honest verdicts both ways: a real fix is reported
significant, a workload no knob affects is not.

The fleet's hosts start with net.core.somaxconn = 128: a burst of 256 connections overflows the
accept queue and waits for a 1 s SYN retransmit; any somaxconn above the burst serves it in
milliseconds. sysbench cpu, on the other hand, does not care about any network knob.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import FLEET

pytestmark = pytest.mark.fleet

TUNEFLEET = [sys.executable, "-m", "controller.cli"]
KNOBS = ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_fin_timeout")

STORM = {
    "workload_name": "connection storm",
    "reward_metric": "elapsed_ms",
    "reward_goal": "minimize",
    # --timeout 4: a hopeless setting (somaxconn 16) fails in 4 s instead of taking 20
    "benchmark_command": "tunefleet-bench accept-storm --clients 256 --timeout 4",
    "benchmark_timeout": 30,
    "baseline_repeats": 2,
    "action_space": [{"param": "net.core.somaxconn", "min": 16, "max": 4096},
                     {"param": "net.ipv4.tcp_max_syn_backlog", "min": 16, "max": 4096}],
    "state_space": [{"metric": "tcp_listen_overflows"}],
}

NULL = {
    "workload_name": "cpu only",
    "reward_metric": "events_per_second",
    "reward_goal": "maximize",
    "benchmark_command": "sysbench cpu --time=1 run",
    "benchmark_timeout": 30,
    "baseline_repeats": 2,
    "action_space": [{"param": "net.ipv4.tcp_fin_timeout", "min": 5, "max": 120}],
    "state_space": [{"metric": "cpu_util"}],
}


def knob_values(inventory, hosts=("h1", "h2", "h3")) -> dict[str, dict[str, str]]:
    return {
        name: {k: subprocess.run(["ip", "netns", "exec", FLEET.ns(name), "cat", "/proc/sys/" + k.replace(".", "/")],
                                 capture_output=True, text=True, check=True).stdout.strip() for k in KNOBS}
        for name in hosts if name in inventory.hosts
    }


def run(fleet_inventory, spec: dict, tmp_path, *args, json_out=True):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    cmd = [*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--limit", "h1,h2,h3", "--spec", str(path),
           "--run-dir", str(tmp_path / "run"), "--yes", *args] + (["--json"] if json_out else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    trials = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    return p, trials


@pytest.mark.parametrize("strategy", ["ppo", "bo", "random"])
def test_each_strategy_runs_end_to_end(fleet_inventory, inventory, tmp_path, strategy):
    before = knob_values(inventory)
    p, trials = run(fleet_inventory, STORM, tmp_path, "--strategy", strategy, "--budget", "6", "--seed", "2",
                    "--verify-repeats", "2")
    result = json.loads(p.stdout)
    assert result["strategy"] == strategy and result["evaluations"] == 6
    phases = [t["phase"] for t in trials]
    assert phases.count("search") == 6 and phases.count("baseline") == 2 * 3 and phases.count("verify") == 2 * 2 * 3
    assert set(result["verification"]) >= {"baseline_median", "best_median", "change_pct", "ci_low_pct",
                                           "ci_high_pct", "p_value", "significant", "repeats"}
    confirm = result["confirm"]
    if confirm["confirmed"]:  # the top candidates were measured again, outside the budget
        n = len(confirm["candidates"])
        assert phases.count("confirm") == n * confirm["repeats_per_host"] * 3
        assert result["best_config"] == confirm["candidates"][confirm["chosen"]]["values"]
    assert "importance" in result and isinstance(result["warnings"], list)
    # honest fields: episodes only where there are episodes (PPO's, counted), rewards only as verified medians
    assert ("total_episodes" in result) == (strategy == "ppo")
    if strategy == "ppo":
        assert 1 <= result["total_episodes"] <= 6
    assert result["best_reward"] == result["verification"]["best_median"]
    assert result["baseline_reward"] == result["verification"]["baseline_median"]
    assert knob_values(inventory) == before


def test_a_real_fix_is_reported_significant(fleet_inventory, inventory, tmp_path):
    before = knob_values(inventory)
    p, trials = run(fleet_inventory, STORM, tmp_path, "--strategy", "bo", "--budget", "9", "--seed", "1",
                    "--verify-repeats", "3", "--confirm-top", "3")
    result = json.loads(p.stdout)
    v = result["verification"]
    assert result["success"] is True and v["significant"] and v["ci_low_pct"] > 50, result["verdict"]
    assert result["improvement"] == v["change_pct"]
    assert int(result["best_config"]["net.core.somaxconn"]) >= 256
    # the knob that mattered leads when any is named, and the one that did not is not credited. A
    # search that closes in fast leaves too few bad settings for the importance test to pass at all
    # ({}: "not enough evidence", seen in CI after a bo run of 9), so the ranking itself is tested on
    # fixed trials in tests/unit/test_importance.py, not on this search's luck.
    if result["importance"]:
        assert next(iter(result["importance"])) == "net.core.somaxconn", result["importance"]
    assert result["importance"].get("net.ipv4.tcp_max_syn_backlog", 0.0) < 0.2
    # confirm trials are recorded, reward relative to the host's baseline, never counted in the budget
    confirm = [t for t in trials if t["phase"] == "confirm"]
    assert confirm and all(t["reward"] is not None for t in confirm if t["error"] is None)
    assert result["evaluations"] == 9
    assert knob_values(inventory) == before


def test_a_workload_no_knob_affects_is_not_reported_significant(fleet_inventory, inventory, tmp_path):
    """sysbench cpu against tcp_fin_timeout. Under the null the verification claims an improvement at
    most 2.5% of the time by design (two-sided 95%), so this test can, rarely, fail by chance."""
    before = knob_values(inventory)
    p, trials = run(fleet_inventory, NULL, tmp_path, "--strategy", "random", "--budget", "6", "--seed", "4",
                    "--verify-repeats", "3", json_out=False)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["success"] is False, result["verdict"]
    assert not (result["verification"]["significant"] and result["verification"]["change_pct"] > 0)
    out = p.stdout
    assert "improvement of" not in out
    assert "unverified" in out  # the best single sample is shown only as such
    assert "knobs that mattered" in out
    assert knob_values(inventory) == before
