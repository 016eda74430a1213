"""Expert priors (initial_candidates): the safety gate, and every strategy evaluating them first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.errors import SpecError
from controller.learn.policystore import PolicyStore
from controller.learn.simfleet import member, sim_fleet
from controller.runs import RunDir
from controller.spec import TuningSpec
from controller.tuner import RunOptions, tune

ROOT = Path(__file__).resolve().parents[2]


def _spec(m, candidates):
    return TuningSpec.from_dict({**m.spec_dict(), "initial_candidates": candidates})


def test_priors_are_normalized_to_sysctl_text():
    m = member(0, 4)
    values = {"net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 4096.0,
              "net.ipv4.tcp_rmem": [4096, 131072, 16777216], "net.ipv4.tcp_wmem": "4096  16384 16777216"}
    spec = _spec(m, [{"values": values, "reason": " big queues "}])
    assert spec.initial_candidates == [{"values": {
        "net.core.somaxconn": "4096", "net.ipv4.tcp_max_syn_backlog": "4096",
        "net.ipv4.tcp_rmem": "4096 131072 16777216", "net.ipv4.tcp_wmem": "4096 16384 16777216"},
        "reason": "big queues"}]
    assert TuningSpec.from_dict(spec.to_dict()).initial_candidates == spec.initial_candidates


@pytest.mark.parametrize("change, message", [
    ({"net.core.somaxconn": 100000}, "initial_candidates[0].values.net.core.somaxconn: 100000 is outside"),
    ({"net.ipv4.tcp_rmem": "4096 131072 999999999"}, "values.net.ipv4.tcp_rmem: '4096 131072 999999999' is outside"),
    ({"vm.swappiness": 10}, "values.vm.swappiness: not a knob of this spec's action_space"),
    ({"net.core.somaxconn": True}, "values.net.core.somaxconn: True is outside"),
])
def test_a_prior_outside_the_gate_is_refused(change, message):
    m = member(0, 4)
    with pytest.raises(SpecError) as e:
        _spec(m, [{"values": {**m.optimum(), **change}, "reason": "x"}])
    assert message in e.value.message and "\n" not in e.value.message


def test_incomplete_or_unexplained_priors_are_refused():
    m = member(0, 4)
    partial = dict(m.optimum())
    partial.pop("net.ipv4.tcp_wmem")
    for bad, message in (([{"values": partial, "reason": "x"}], "tcp_wmem: missing"),
                         ([{"values": m.optimum()}], "[0].reason: must be one line"),
                         ([{"values": m.optimum(), "reason": "a\nb"}], "[0].reason: must be one line"),
                         ([{"values": m.optimum(), "reason": "x", "score": 1}], "[0].score: unknown field")):
        with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
            _spec(m, bad)


def test_cli_refuses_a_bad_prior_in_one_line(tmp_path):
    m = member(0, 4)
    spec = {**m.spec_dict(), "benchmark_command": "tunefleet-bench accept --connections 10",
            "reward_metric": "elapsed_ms",
            "initial_candidates": [{"values": {**m.optimum(), "net.core.somaxconn": 70000}, "reason": "x"}]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = subprocess.run([sys.executable, "-m", "controller.cli", "plan", "--spec", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunefleet: error: ") and "somaxconn: 70000 is outside" in lines[0]


@pytest.mark.parametrize("strategy", ["random", "bo", "ppo", "auto"])
def test_a_prior_at_the_optimum_wins_at_budget_3(strategy, tmp_path):
    """Every strategy evaluates the priors first and they can win selection: with the optimum among
    them, a budget of 3 ends at regret ~0 on a member whose original is far from it."""
    m = next(member(i, 4) for i in range(40) if member(i, 4).ratio > 50)
    decoy = {**m.originals, "net.core.somaxconn": "64"}
    spec = _spec(m, [{"values": {k: decoy[k] for k in m.spec().knob_names}, "reason": "a poor guess"},
                     {"values": m.optimum(), "reason": "the answer"}])
    run = RunDir.create(spec.workload_name, tmp_path / "run")
    try:
        result = tune(spec, sim_fleet(m, 3, seed=7), run,
                      RunOptions(strategy=strategy, budget=3, seed=7, verify_repeats=2,
                                 policy_store=PolicyStore(tmp_path / "policies")))
    finally:
        run.close()
    assert m.regret(result["best_config"]) < 0.01
    first = [t for t in run.trials() if t["phase"] == "search"][:2]
    assert sorted(t["values"]["net.core.somaxconn"] for t in first) == sorted(["64", m.optimum()["net.core.somaxconn"]])


def test_builtin_priors_pass_the_gate_and_survive_leaving_knobs_out():
    from controller.catalog import Catalog
    from controller.gate import validate
    from controller.strategist.builtin import WORKLOADS, without

    with_priors = [w for w in WORKLOADS if w.spec.initial_candidates]
    assert len(with_priors) >= 5
    for w in with_priors:
        validate(w.spec, Catalog.default())
        gone = w.spec.knob_names[0]
        dropped = without(w.spec, [gone])
        assert all(set(c["values"]) == set(dropped.knob_names) for c in dropped.initial_candidates)
        # the reason, which may be about the value that went, says it went
        assert all(c["reason"].endswith(f"(without its {gone}: left out of this plan)")
                   for c in dropped.initial_candidates)
    postgres = next(w for w in WORKLOADS if w.key == "pg-oltp")
    shared = without(postgres.spec, [k for k in postgres.spec.knob_names if k.startswith(("vm.", "kernel."))])
    assert {frozenset(c["values"]) for c in shared.initial_candidates} == {frozenset({"net.core.somaxconn"})}


def test_the_matching_expert_profiles_are_priors_of_the_builtin_workloads():
    """What an administrator would apply instead is measured first: the profiles that fit a workload
    (controller/profiles), restricted to its knobs, the workload's own prior for the rest."""
    from controller import profiles
    from controller.strategist.builtin import WORKLOADS

    oltp = next(w for w in WORKLOADS if w.key == "pg-oltp").spec
    reasons = [c["reason"] for c in oltp.initial_candidates]
    assert reasons[0].startswith("smaller dirty thresholds")
    tuned = next(c for c in oltp.initial_candidates if c["reason"].startswith("the expert profile tuned:postgresql"))
    expected = profiles.get("tuned:postgresql").values
    assert tuned["values"]["vm.swappiness"] == expected["vm.swappiness"] == "3"
    assert tuned["values"]["kernel.sched_autogroup_enabled"] == "0"
    # its vm.dirty_ratio = 0 (it sets dirty_bytes instead) is outside the knob's range: the own prior's stays
    assert tuned["values"]["vm.dirty_ratio"] == oltp.initial_candidates[0]["values"]["vm.dirty_ratio"]
    redis = next(w for w in WORKLOADS if w.key == "redis").spec
    docs = next(c for c in redis.initial_candidates if c["reason"].startswith("the expert profile redis:docs"))
    assert docs["values"]["net.core.somaxconn"] == "511" and docs["values"]["vm.overcommit_memory"] == "1"


def test_the_model_is_asked_for_priors_and_they_pass_the_same_gate():
    """A prior outside the knob's range goes back to the model as a rejection; the fixed answer's
    priors reach the plan (the scripted chat server of test_llm_strategist)."""
    from tests.fake_llm import optimize, reply
    from tests.unit.test_llm_strategist import GOOD, host_facts, plan_with

    facts = {"db1": host_facts("db1", "boot-a"), "db2": host_facts("db2", "boot-b")}
    good = {"net.ipv4.tcp_max_syn_backlog": 4096, "net.ipv4.tcp_fin_timeout": 15}
    bad = {**GOOD, "initial_candidates": [{"values": {**good, "net.ipv4.tcp_max_syn_backlog": 70000},
                                           "reason": "big queue"}]}
    fixed = {**GOOD, "initial_candidates": [{"values": good, "reason": "big queue, quick FIN_WAIT_2"}]}
    fake, plan = plan_with([reply(optimize(bad)), reply(optimize(fixed))], facts)
    instructions = fake.messages(0)[0]["content"]
    assert "initial_candidates 1 to 3 complete configurations" in instructions  # the model is asked for them
    assert fake.count == 2
    assert "initial_candidates[0].values.net.ipv4.tcp_max_syn_backlog: 70000 is outside" in fake.tool_results(1)[0]
    assert plan.spec.initial_candidates == [{"values": {"net.ipv4.tcp_max_syn_backlog": "4096",
                                                        "net.ipv4.tcp_fin_timeout": "15"},
                                             "reason": "big queue, quick FIN_WAIT_2"}]
