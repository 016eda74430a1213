"""The per-host gymnasium env and the fleet VecEnv, on real hosts of the local fleet."""

from __future__ import annotations

import numpy as np
import pytest

from controller.fleet.executor import ThreadExecutor
from controller.fleet.fleet import ConnectOptions, Fleet
from controller.learn.env import HostEnv
from controller.learn.evaluation import HostEvaluator, Recorder
from controller.spec import TuningSpec
from controller.tuner import read_originals

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


def make_env(host, spec, originals, recorder):
    ev = HostEvaluator(host, spec, recorder)
    base = ev.evaluate(None, phase="baseline")
    assert base.ok, base.error
    ev.baseline = base.raw
    return HostEnv(ev, spec, originals=originals[host.name], baseline_metrics=base.metrics, episode_steps=3)


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
    assert obs[-3] == pytest.approx(1.0) and env.last_trial.values["net.core.somaxconn"] == "1024"
    assert env.last_trial.values["net.ipv4.tcp_rmem"] == "4096 262144 4194304"
    assert -1.0 <= reward <= 5.0


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
