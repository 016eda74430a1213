"""Expert priors and --strategy auto on the local fleet: the prior is the first thing the search
runs on a real host, it counts toward the budget, and auto without a trained policy is bo."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_strategies import STORM, knob_values, run

pytestmark = pytest.mark.fleet

PRIOR = {"values": {"net.core.somaxconn": 1024, "net.ipv4.tcp_max_syn_backlog": 1024},
         "reason": "queues longer than the 256-client burst"}


def test_auto_runs_the_prior_first_and_it_can_win(fleet_inventory, inventory, tmp_path):
    before = knob_values(inventory)
    spec = {**STORM, "initial_candidates": [PRIOR]}
    p, trials = run(fleet_inventory, spec, tmp_path, "--budget", "3", "--seed", "5", "--verify-repeats", "2")
    result = json.loads(p.stdout)
    assert result["strategy"] == "bo" and result["evaluations"] == 3  # auto, with an empty policy store
    search = [t for t in trials if t["phase"] == "search"]
    first = min(search, key=lambda t: t["index"])
    assert first["values"] == {"net.core.somaxconn": "1024", "net.ipv4.tcp_max_syn_backlog": "1024"}
    assert first["error"] is None and first["reward"] > 1.0  # the storm's 1 s retransmit is gone: > e times faster
    assert int(result["best_config"]["net.core.somaxconn"]) >= 256 and result["success"] is True, result["verdict"]
    assert knob_values(inventory) == before
