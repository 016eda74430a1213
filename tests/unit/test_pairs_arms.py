"""Pairs of hosts for a benchmark with a partner, the arms of a verification, the steps around a
measured run and constraints on other metrics: the pure parts, on fixed inputs."""

from __future__ import annotations

import math

import pytest

from controller import lifecycle, pairs
from controller.errors import SpecError
from controller.learn import arms, stats
from controller.learn.evaluation import FAILURE_REWARD, Trial, penalized
from controller.learn.select import Candidate, choose
from controller.spec import TuningSpec

BASE = {"workload_name": "w", "reward_metric": "requests_per_second", "benchmark_command": "wrk http://x/",
        "action_space": [{"param": "net.ipv4.tcp_fin_timeout", "min": 5, "max": 60}]}


def spec(**extra) -> TuningSpec:
    return TuningSpec.from_dict({**BASE, **extra})


# --- pairs -----------------------------------------------------------------------------------------

def test_auto_pairs_go_two_by_two_in_inventory_order_and_the_odd_host_sits_out():
    p = pairs.pair(spec(peer={}), ["h1", "h2", "h3"])
    assert p.pairs == {"h1": "h2"} and list(p.left_out) == ["h3"] and p.describe() == "h1 -> h2"
    assert pairs.pair(spec(peer={}), ["a", "b", "c", "d"]).pairs == {"a": "b", "c": "d"}


@pytest.mark.parametrize("given, hosts, problem", [
    ([["h1", "h9"]], ["h1", "h2"], "h9, which is not among the selected hosts"),
    ([["h1", "h2"], ["h2", "h3"]], ["h1", "h2", "h3"], "names h2 twice"),
    ([["h1", "h1"]], ["h1", "h2"], "names h1 twice"),
    ("auto", ["h1"], "needs pairs of hosts"),
])
def test_pairs_that_cannot_be_made_are_refused_in_one_line(given, hosts, problem):
    with pytest.raises(SpecError, match=problem):
        pairs.pair(spec(peer={"pairs": given}), hosts)


def test_the_server_follows_its_clients_values_and_keeps_its_own_originals():
    own, theirs = {"a": "1", "b": "2"}, {"a": "10", "b": "20"}
    assert pairs.peer_values({"a": "1", "b": "5"}, own, theirs) == {"a": "10", "b": "5"}
    assert pairs.fill("stream --to {peer}:1", "10.0.0.2") == "stream --to 10.0.0.2:1"
    assert pairs.fill(["x", "{peer}"], "10.0.0.2") == ["x", "10.0.0.2"]


def test_a_link_needs_a_rate_and_bounds_its_values():
    assert spec(peer={"link": {"delay_ms": 50, "rate_mbit": 200}}).peer.link.loss_pct == 0
    with pytest.raises(SpecError, match="rate_mbit"):
        spec(peer={"link": {"delay_ms": 50}})
    with pytest.raises(SpecError, match="loss_pct"):
        spec(peer={"link": {"delay_ms": 50, "rate_mbit": 10, "loss_pct": 150}})


# --- arms --------------------------------------------------------------------------------------------

def test_two_arms_run_in_abba_pairs_and_half_the_hosts_start_from_the_other_end():
    assert arms.schedule(["A", "B"], 4, flip=False) == stats.interleaved_schedule(4, first="A")
    assert arms.schedule(["A", "B"], 4, flip=True) == stats.interleaved_schedule(4, first="B")


def test_more_arms_rotate_so_each_runs_as_often_in_every_position():
    order = arms.schedule(["A", "B", "C"], 6, flip=False)
    assert sorted(order) == ["A"] * 6 + ["B"] * 6 + ["C"] * 6
    blocks = [order[i:i + 3] for i in range(0, 18, 3)]
    for label in "ABC":
        assert sorted(b.index(label) for b in blocks) == [0, 0, 1, 1, 2, 2]


def _trial(host, raw, observed=None):
    return Trial(host, "verify", {}, raw=raw, observed=observed or {})


def test_summarize_compares_every_arm_with_the_original_and_the_winner_with_every_arm():
    s = spec(constraints=[{"metric": "latency_p99_ms", "max": 20}])
    samples = {h: {"original": [_trial(h, 100 + i, {"latency_p99_ms": 30}) for i in range(5)],
                   "best": [_trial(h, 150 + i, {"latency_p99_ms": 10 + i * 0.1}) for i in range(5)],
                   "tuned:x": [_trial(h, 120 + i, {"latency_p99_ms": 25}) for i in range(5)]}
               for h in ("h1", "h2", "h3")}
    everyone = [arms.Arm("original"), arms.Arm("best"), arms.Arm("tuned:x", own={"h1": {"k": "1"}})]
    out = arms.summarize(samples, everyone, s, seed=0)
    assert out["verification"]["significant"] and out["verification"]["change_pct"] == pytest.approx(50, abs=1)
    profile = out["arms"]["tuned:x"]
    assert profile["verification"]["change_pct"] == pytest.approx(20, abs=1)
    assert profile["best_vs"]["significant"] and profile["best_vs"]["change_pct"] > 20  # the winner is better
    [c] = out["constraints"]
    assert c["arms"]["best"]["holds"] is True and c["arms"]["original"]["holds"] is False
    assert c["arms"]["tuned:x"]["median"] == 25


def test_a_bound_the_interval_straddles_is_not_shown_either_way():
    [c] = spec(constraints=[{"metric": "latency_p99_ms", "max": 20}]).constraints
    assert arms.bound(c, {"h1": [18, 19, 21, 22, 19.5]}, seed=0)["holds"] is None
    assert arms.bound(c, {"h1": [10, 11, 12]}, seed=0)["holds"] is True
    assert arms.bound(c, {"h1": [25, 26, 27]}, seed=0)["holds"] is False


# --- constraints ------------------------------------------------------------------------------------

def test_a_run_that_breaks_a_bound_scores_below_the_original_and_lower_the_further_it_is_past():
    [c] = spec(constraints=[{"metric": "latency_p99_ms", "max": 20}]).constraints
    ok = _trial("h", 1, {"latency_p99_ms": 19})
    near, far = _trial("h", 1, {"latency_p99_ms": 22}), _trial("h", 1, {"latency_p99_ms": 80})
    assert penalized(0.7, ok, [c]) == 0.7
    assert penalized(0.7, near, [c]) < 0 and penalized(0.7, far, [c]) < penalized(0.7, near, [c])
    assert penalized(0.7, far, [c]) > FAILURE_REWARD


def test_a_constraint_needs_one_limit_and_a_known_metric_or_a_pattern():
    with pytest.raises(SpecError, match="exactly one of max or min"):
        spec(constraints=[{"metric": "latency_p99_ms", "max": 1, "min": 0}])
    with pytest.raises(SpecError, match="not a known metric"):
        spec(constraints=[{"metric": "p99ish", "max": 1}])
    assert spec(constraints=[{"metric": "p99ish", "max": 1, "pattern": r"p99 ([0-9]+)"}]).observed_metrics == ["p99ish"]


def test_choosing_prefers_a_candidate_that_kept_the_bounds_when_measured_again():
    fast = Candidate({"k": "1"}, _trial("h", 1), [1.0], confirm_rewards=[0.9, 0.8], confirm_feasible=[False, False])
    kept = Candidate({"k": "2"}, _trial("h", 1), [0.5], confirm_rewards=[0.4, 0.5], confirm_feasible=[True, True])
    assert choose([fast, kept]) is kept
    assert choose([fast]) is fast  # when none kept them, the best is still shown (and not claimed)


# --- steps around a measured run ---------------------------------------------------------------------

SERVED = spec(setup=["tunefleet-service nginx setup"], teardown=["tunefleet-service nginx teardown"],
              reset="tunefleet-service nginx reset", warmup="wrk -d 1 http://x/",
              service={"name": "nginx", "start": "tunefleet-service nginx start",
                       "stop": "tunefleet-service nginx stop", "ready": "127.0.0.1:18080"})


def test_every_measured_run_is_prepared_alike_with_the_restart_first():
    assert [s["what"] for s in lifecycle.before_each_run(SERVED, restart=True)] == [
        "nginx stop", "nginx start", "nginx ready", "reset", "warm-up"]
    assert [s["what"] for s in lifecycle.before_each_run(SERVED, restart=False)] == ["reset", "warm-up"]


def test_setup_before_the_start_and_the_stop_before_the_teardown():
    assert [s["what"] for s in lifecycle.at_start(SERVED)] == ["setup 1", "nginx start", "nginx ready"]
    assert [s["what"] for s in lifecycle.at_exit(SERVED)] == ["nginx stop", "teardown 1"]
    assert all(s["timeout"] > 0 for s in lifecycle.at_start(SERVED) + lifecycle.at_exit(SERVED))


def test_median_interval_resamples_within_each_host():
    median, low, high = stats.median_interval({"h1": [1, 1, 1], "h2": [3, 3, 3]}, seed=0)
    assert median == 2 and low == high == 2  # each host keeps its share of the pool
    assert not math.isnan(stats.median_interval({"h1": [1.0]}, seed=0)[0])


def test_a_coupled_pair_goes_back_through_the_knob_in_force():
    """tuned:postgresql sets vm.dirty_bytes (the kernel then zeroes vm.dirty_ratio); on a host where the
    ratio is in force (dirty_bytes reads 0, and writing 0 is refused) the other arms put the pair back
    through the ratio, and the profile's arm never writes the ratio after its bytes."""
    originals = {"h1": {"vm.dirty_ratio": "20", "vm.dirty_bytes": "0", "vm.swappiness": "60"}}
    profile = arms.Arm("tuned:postgresql", bounds={"vm.dirty_bytes": {}, "vm.swappiness": {}})
    everyone = [arms.Arm("original"), arms.Arm("best"), profile]
    assert arms.knobs_of(everyone) == ["vm.dirty_bytes", "vm.swappiness", "vm.dirty_ratio"]
    arms.complete(everyone, ["vm.swappiness"], originals, {"vm.swappiness": "10"})
    assert everyone[0].values["h1"] == {"vm.swappiness": "60", "vm.dirty_ratio": "20"}
    assert everyone[1].values["h1"] == {"vm.swappiness": "10", "vm.dirty_ratio": "20"}
    assert profile.values["h1"] == {"vm.swappiness": "3", "vm.dirty_bytes": "536870912"}
