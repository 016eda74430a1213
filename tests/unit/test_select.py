"""Choosing the best candidate: distinct configurations, ranking, and the re-measured choice."""

from __future__ import annotations

from controller.learn.evaluation import FAILURE_REWARD, Trial
from controller.learn.select import Candidate, Selection, choose, config_key, top_candidates


def trial(somaxconn: int, reward: float | None, phase: str = "search", error: str | None = None, host="h1") -> Trial:
    return Trial(host, phase, {"net.core.somaxconn": str(somaxconn)}, raw=1.0, reward=reward, error=error)


def test_config_key_ignores_spacing_and_order():
    a = {"net.ipv4.tcp_rmem": "4096  16384 65536", "net.core.somaxconn": "512"}
    b = {"net.core.somaxconn": "512", "net.ipv4.tcp_rmem": "4096 16384\t65536"}
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key({**b, "net.core.somaxconn": "513"})


def test_top_candidates_groups_repeats_and_ranks_by_mean():
    trials = [
        trial(512, 0.50),
        trial(1024, 0.90),   # one lucky sample ...
        trial(1024, 0.10),   # ... and a poor one: mean 0.50, found first among the ties? no: 512 was first
        trial(2048, 0.70),
        trial(16, 0.95, phase="confirm"),            # not a search trial
        trial(32, FAILURE_REWARD, error="exit 1"),   # failed
        trial(64, 0.99, phase="baseline"),
    ]
    ranked = top_candidates(trials, top_k=5)
    assert [c.values["net.core.somaxconn"] for c in ranked] == ["2048", "512", "1024"]
    c1024 = ranked[2]
    assert c1024.search_rewards == [0.90, 0.10] and c1024.trial.reward == 0.90  # its best trial is kept
    assert [c.values["net.core.somaxconn"] for c in top_candidates(trials, top_k=2)] == ["2048", "512"]
    assert len(top_candidates(trials, top_k=0)) == 1  # never nothing when something succeeded
    assert top_candidates([trial(32, FAILURE_REWARD, error="boom")], top_k=3) == []


def test_choose_trusts_fresh_samples_over_the_lucky_search_sample():
    lucky = Candidate({"k": "1"}, trial(1, 0.30), [0.30], confirm_rewards=[0.01, -0.02, 0.00])
    steady = Candidate({"k": "2"}, trial(2, 0.20), [0.20], confirm_rewards=[0.18, 0.21, 0.19])
    assert choose([lucky, steady]) is steady


def test_choose_counts_failed_remeasurements_and_falls_back_on_search_order():
    flaky = Candidate({"k": "1"}, trial(1, 0.5), [0.5], confirm_rewards=[0.5, FAILURE_REWARD, FAILURE_REWARD])
    solid = Candidate({"k": "2"}, trial(2, 0.3), [0.3], confirm_rewards=[0.25, 0.3, 0.28])
    assert choose([flaky, solid]) is solid
    a = Candidate({"k": "1"}, trial(1, 0.5), [0.5])
    b = Candidate({"k": "2"}, trial(2, 0.4), [0.4])
    assert choose([a, b]) is a  # nothing re-measured: the search's ranking
    tie_a = Candidate({"k": "1"}, trial(1, 0.5), [0.5], confirm_rewards=[0.2])
    tie_b = Candidate({"k": "2"}, trial(2, 0.4), [0.4], confirm_rewards=[0.2])
    assert choose([tie_a, tie_b]) is tie_a


def test_selection_record():
    a = Candidate({"k": "1"}, trial(1, 0.5), [0.5], confirm_rewards=[0.1, 0.3, 0.2])
    b = Candidate({"k": "2"}, trial(2, 0.4), [0.4], confirm_rewards=[0.35, 0.4, 0.3])
    sel = Selection(choose([a, b]), [a, b], confirmed=True, repeats=1)
    d = sel.to_dict()
    assert sel.values == {"k": "2"} and d["chosen"] == 1 and d["confirmed"] is True
    assert d["candidates"][0]["confirm_median"] == 0.2 and d["candidates"][1]["confirm_median"] == 0.35
