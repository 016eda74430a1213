"""The per-host gymnasium env and the fleet VecEnv, on real hosts of the local fleet: the metrics
the agent streams during a real benchmark enter the observation."""

from __future__ import annotations

import numpy as np
import pytest

from controller.fleet.executor import ThreadExecutor
from controller.fleet.fleet import ConnectOptions, Fleet, read_originals
from controller.learn import features
from controller.learn.env import HostEnv
from controller.learn.evaluation import HostEvaluator, Recorder
from controller.spec import TuningSpec

SPEC = {
    "workload_name": "small storm",
    "reward_metric": "elapsed_ms",
    "benchmark_command": "tunefleet-bench accept-storm --clients 64",
    "benchmark_timeout": 20,
    "action_space": [{"param": "net.core.somaxconn", "min": 64, "max": 1024},
                     {"param": "net.ipv4.tcp_rmem", "min": "4096 16384 65536", "max": "4096 262144 4194304"}],
    "state_space": [{"metric": "cpu_utilization"}, {"metric": "tcp_listen_overflows"}],
}


@pytest.fixture()
def fleet(inventory):
    spec = TuningSpec.from_dict(SPEC)
    f = Fleet.connect(inventory.select("h1,h2"), ConnectOptions(knobs=tuple(spec.knob_names)))
    assert not f.failed, f.failed
    originals = read_originals(f, spec.knob_names)
    yield f, spec, originals
    f.close()
    after = Fleet.connect(inventory.select("h1,h2"))
    try:
        assert read_originals(after, spec.knob_names) == originals  # bye restored everything
    finally:
        after.close()


def make_env(host, spec, originals, recorder, episode_steps=3):
    ev = HostEvaluator(host, spec, recorder)
    base = ev.evaluate(None, phase="baseline")
    assert base.ok, base.error
    ev.baseline = base.raw
    ev.baseline_aggregates = features.mean_aggregates([base.aggregates])
    return HostEnv(ev, spec, originals=originals[host.name], episode_steps=episode_steps)


def test_host_env_passes_stable_baselines3_check_env(fleet):
    from stable_baselines3.common.env_checker import check_env

    f, spec, originals = fleet
    recorder = Recorder()
    env = make_env(f.hosts["h1"], spec, originals, recorder)
    check_env(env, warn=True, skip_render_check=True)
    searched = recorder.search_trials("h1")
    assert searched and all(t.ok for t in searched), [t.error for t in searched]
    # the observation carries the knob values that were really applied
    obs, reward, *_ = env.step(np.array([1.0, 1.0, 1.0], dtype=np.float32))
    assert obs[0] == pytest.approx(1.0) and env.last_trial.values["net.core.somaxconn"] == "1024"
    assert env.last_trial.values["net.ipv4.tcp_rmem"] == "4096 262144 4194304"
    assert obs.shape == (3 + features.SIZE + 1,)


def test_streamed_metrics_enter_the_observation(inventory):
    """The fleet's hosts start at somaxconn 128, which holds a storm of 64 connections. At
    somaxconn 16 the accept queue overflows: the ListenOverflows counter the agent streams rises,
    and the policy sees it in the observation's features (0 would mean "as in the baseline")."""
    spec = TuningSpec.from_dict({**SPEC, "benchmark_command": "tunefleet-bench accept-storm --clients 64 --timeout 4",
                                 "action_space": [{"param": "net.core.somaxconn", "min": 16, "max": 1024}]})
    f = Fleet.connect(inventory.select("h1"), ConnectOptions(knobs=tuple(spec.knob_names)))
    try:
        assert not f.failed, f.failed
        originals = read_originals(f, spec.knob_names)
        assert originals["h1"]["net.core.somaxconn"] == "128", "fleet-up sets somaxconn 128"
        env = make_env(f.hosts["h1"], spec, originals, Recorder(), episode_steps=4)
        start, _ = env.reset()
        assert not env.features_of(start).any()  # the originals: as in the baseline by definition
        overflows = features.NAMES.index("tcp_listen_overflows.sum")

        obs, *_ = env.step(np.array([-1.0], dtype=np.float32))  # somaxconn 16
        short = env.last_trial
        assert short.values["net.core.somaxconn"] == "16" and short.samples >= 1
        assert short.features["tcp_listen_overflows.sum"] > 0.5, short.features
        seen = env.features_of(obs)
        assert seen[overflows] == pytest.approx(short.features["tcp_listen_overflows.sum"], abs=1e-4)

        obs, *_ = env.step(np.array([1.0], dtype=np.float32))  # somaxconn 1024: no overflow
        assert env.features_of(obs)[overflows] < 0.2
        assert env.features_of(obs)[overflows] < seen[overflows] - 0.4
    finally:
        f.close()
    after = Fleet.connect(inventory.select("h1"))
    try:
        assert read_originals(after, spec.knob_names) == originals
    finally:
        after.close()


def test_fleet_vecenv_steps_hosts_concurrently(fleet):
    from controller.learn.vecenv import FleetVecEnv

    f, spec, originals = fleet
    recorder = Recorder()
    envs = [make_env(f.hosts[n], spec, originals, recorder) for n in ("h1", "h2")]
    venv = FleetVecEnv(envs, ThreadExecutor(2))
    venv.reset()
    obs, rewards, dones, infos = venv.step(np.zeros((2, spec.action_dim), dtype=np.float32))
    assert obs.shape == (2, envs[0].observation_space.shape[0])
    a, b = (i["trial"] for i in infos)
    assert {a.host, b.host} == {"h1", "h2"} and a.ok and b.ok
    # both hosts' evaluations ran at the same time: each started before the other had finished
    assert b.time < a.time + a.duration_s and a.time < b.time + b.duration_s
