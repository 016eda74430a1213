"""The simulated fleet: a family of known surfaces behind the agent protocol, run through tune()."""

from __future__ import annotations

import time

import numpy as np
import pytest

from controller.learn import features
from controller.learn.simfleet import KNOBS, SimHost, member, sim_fleet
from controller.runs import RunDir
from controller.tuner import RunOptions, tune
from node_agent import metrics as agent_metrics


def test_family_members_differ_and_repeat():
    a, b = member(1, 4), member(2, 4)
    assert a.optimum() != b.optimum()
    again = member(1, 4)
    assert again.optimum() == a.optimum() and again.ratio == a.ratio


@pytest.mark.parametrize("dims", [2, 3, 5, 8])
def test_optimum_inside_the_box_and_originals_ratio_times_worse(dims):
    for i in range(8):
        m = member(i, dims)
        spec = m.spec()
        assert spec.knob_names == [k.param for k in KNOBS[:dims]]
        opt = m.optimum()
        assert all(k.contains(opt[k.param]) for k in spec.action_space)
        assert m.regret(opt) == 0.0 and m.regret(m.originals) == 1.0
        assert 1.2 <= m.ratio <= 1000.0
        assert m.true_perf(opt) / m.true_perf(m.originals) == pytest.approx(m.ratio, rel=1e-6)


def test_dims_outside_the_family_are_refused():
    with pytest.raises(ValueError):
        member(0, 1)
    with pytest.raises(ValueError):
        member(0, 9)


def test_apply_checks_bounds_like_the_agent():
    m = member(0, 4)
    host = SimHost("s", m)
    out = host.request("apply", {"values": {"net.core.somaxconn": 100000, "net.ipv4.tcp_max_syn_backlog": "512"},
                                 "bounds": {"net.core.somaxconn": {"min": 16, "max": 65535}}})
    assert out["applied"] == {"net.ipv4.tcp_max_syn_backlog": "512"}
    assert out["refused"]["net.core.somaxconn"]["type"] == "ValidationError"
    assert host.request("read", {"names": ["net.core.somaxconn"]})["values"] == {
        "net.core.somaxconn": m.originals["net.core.somaxconn"]}
    assert "vm.nope" in host.request("apply", {"values": {"vm.nope": 1}})["refused"]


def test_a_kernel_cap_refuses_with_einval():
    m = next(member(i, 4) for i in range(50) if member(i, 4).rmem_cap is not None)
    host = SimHost("s", m)
    out = host.request("apply", {"values": {"net.ipv4.tcp_rmem": f"4096 131072 {int(m.rmem_cap) + 1}"}})
    assert out["refused"]["net.ipv4.tcp_rmem"]["errno"] == 22


def test_run_reports_what_the_kernel_would():
    """Metric names are the real agent's (its derive() on this machine's /proc is the reference);
    overflows count while the accept queue is shorter than the burst, retransmits while buffers are small."""
    snap = agent_metrics.snapshot()
    time.sleep(0.05)  # a few clock ticks, or derive() leaves cpu_* out
    real_names = set(agent_metrics.derive(snap, agent_metrics.snapshot()))
    m = member(3, 4)
    host = SimHost("s", m)
    events = []
    short = host.request("run", {"cmd": "x", "timeout": 5}, on_event=events.append)
    assert events and all(e["event"] == "sample" and set(e["data"]) == {"t", "metrics"} for e in events)
    assert set(short["metrics"]) <= real_names
    assert short["exit_code"] == 0 and m.spec().parse_reward(short["stdout_tail"]) > 0
    host.request("apply", {"values": m.optimum()})
    fixed = host.request("run", {"cmd": "x", "timeout": 5})
    assert short["metrics"]["tcp_listen_overflows"] > 1000 and fixed["metrics"]["tcp_listen_overflows"] == 0
    assert short["metrics"]["tcp_retrans_per_s"] > 10 * fixed["metrics"]["tcp_retrans_per_s"]
    raw = m.spec().parse_reward(fixed["stdout_tail"])
    assert raw == pytest.approx(m.true_perf(m.optimum()), rel=5 * m.noise)


def test_failure_regions_fail_the_benchmark():
    m = member(0, 5)
    host = SimHost("s", m)
    host.request("apply", {"values": {"net.ipv4.tcp_fin_timeout": int(m.fin_floor) - 1}})
    out = host.request("run", {"cmd": "x", "timeout": 5})
    assert out["exit_code"] != 0 and "reset" in out["stderr_tail"]


def test_tune_runs_on_a_simulated_fleet_and_restores(tmp_path):
    m = member(5, 4)
    fleet = sim_fleet(m, hosts=3, seed=1)
    run = RunDir.create(m.spec().workload_name, tmp_path / "run")
    try:
        result = tune(m.spec(), fleet, run, RunOptions(strategy="bo", budget=24, seed=1, verify_repeats=2))
    finally:
        run.close()
    assert result["evaluations"] == 24 and sorted(result["hosts"]) == ["sim1", "sim2", "sim3"]
    assert m.regret(result["best_config"]) < 0.5
    hosts = list(fleet.hosts.values())
    assert any(h.values != m.originals for h in hosts)  # verification left the best in force
    fleet.close()
    assert all(h.values == m.originals for h in hosts)


def test_a_fleet_of_several_members_gives_each_host_its_own_server(tmp_path):
    """A training fleet: host i runs member i (its own originals, burst and optimum); tune() keeps
    each host's baseline and originals apart and restores each host to its own."""
    group = [member(i, 4) for i in range(4)]
    fleet = sim_fleet(group, hosts=4, seed=2)
    hosts = [fleet.hosts[f"sim{i + 1}"] for i in range(4)]
    assert [h.member.index for h in hosts] == [0, 1, 2, 3]
    run = RunDir.create(group[0].spec().workload_name, tmp_path / "run")
    try:
        tune(group[0].spec(), fleet, run, RunOptions(strategy="random", budget=8, seed=2, verify_repeats=2))
    finally:
        run.close()
    fleet.close()
    assert all(h.values == h.member.originals for h in hosts)
    assert len({h.member.originals["net.core.somaxconn"] for h in hosts}) > 1
    with pytest.raises(ValueError, match="same knobs"):
        sim_fleet([member(0, 2), member(1, 4)])


def _train_and_propose(tmp_path, members: int = 4) -> list[float]:
    """Train PPO through a policy store on members 0 .. members-1 (2 knobs), then the queue its
    stored policy proposes first on held-out members, as a multiple of each member's burst."""
    from stable_baselines3 import PPO

    from controller.learn.policystore import PolicyStore
    from controller.learn.simfleet import _int

    store = PolicyStore(tmp_path / "policies")
    for i in range(members):
        m = member(i, 2)
        run = RunDir.create(m.spec_dict()["workload_name"], tmp_path / f"run{i}")
        try:
            tune(m.spec(), sim_fleet(m, 3, i), run,
                 RunOptions(strategy="ppo", budget=48, seed=i, verify_repeats=2, policy_store=store))
        finally:
            run.close()
    spec = member(100, 2).spec()
    model = PPO.load(str(store.find(spec, "").path(store.root)), device="cpu")
    out = []
    for index in range(100, 110):
        m = member(index, 2)
        obs = np.concatenate([spec.to_unit(m.originals), np.zeros(features.SIZE + 1)]).astype(np.float32)
        v = spec.to_values(model.predict(obs, deterministic=True)[0])
        out.append(min(_int(v["net.core.somaxconn"]), 2 * _int(v["net.ipv4.tcp_max_syn_backlog"])) / m.burst)
    return out


def test_ppo_trained_on_other_members_proposes_a_queue_long_enough_for_held_out_ones(tmp_path, monkeypatch):
    """Every member overflows at its originals and wants a queue of at least its burst (2048 and
    more): a policy trained on four members proposes that first on ten it never saw. The same
    runs with PPO's updates switched off leave the initial policy, whose mean is the middle of
    the box (a queue of about 1000)."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    trained = _train_and_propose(tmp_path / "trained")
    assert sum(q >= 1.0 for q in trained) >= 9, [round(q, 2) for q in trained]
    monkeypatch.setattr(PPO, "train", lambda self: None)
    untrained = _train_and_propose(tmp_path / "untrained")
    assert sum(q >= 1.0 for q in untrained) <= 2, [round(q, 2) for q in untrained]
