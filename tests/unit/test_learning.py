"""The learning path on a formula surface (tests/unit/surface.py) through the real SearchContext,
HostEvaluator and FleetVecEnv: rewards that see every improvement, a policy that learns and
transfers, training_config honoured."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.errors import SpecError
from controller.learn.search import STRATEGIES
from controller.learn.select import pick_best
from tests.unit import surface

pytest.importorskip("stable_baselines3")


def hosts_for(seed: int, optimum=(0.8, 0.7), n: int = 3) -> list[surface.SurfaceHost]:
    return [surface.SurfaceHost(f"h{i}", optimum=optimum, width=0.15, seed=seed * 10 + i) for i in range(n)]


def late_log_truth(ctx, hosts: list[surface.SurfaceHost]) -> float:
    """Mean log of the true (noise-free) result over the last third of the search."""
    trials = ctx.recorder.search_trials()
    late = trials[-max(1, len(trials) // 3):]
    return float(np.mean([math.log(hosts[0].truth(t.values)) for t in late]))


@pytest.mark.parametrize("strategy", ["bo", "ppo"])
def test_a_1000x_optimum_is_found_well_past_20x(strategy):
    """The original scores 1, the optimum 1000. A reward clipped at +500% scored everything past 6x
    the same and the searches stopped around 20x."""
    chosen = []
    for seed in range(6):
        hosts = hosts_for(seed)
        ctx = surface.context(hosts, surface.spec(), budget=40, seed=seed)
        STRATEGIES[strategy](ctx)
        chosen.append(hosts[0].truth(pick_best(ctx, top_k=3).values))
    # clipped at +500%: bo chose 11x and 35x on two seeds, ppo a median of 190x
    assert min(chosen) > 60 and np.median(chosen) > 300, sorted(round(c) for c in chosen)


def run_ppo(seed: int, budget: int, **kw):
    hosts = hosts_for(seed, **{k: kw.pop(k) for k in ("optimum",) if k in kw})
    ctx = surface.context(hosts, surface.spec(training_config=kw.pop("training_config", {})), budget=budget,
                          seed=seed, **kw)
    STRATEGIES["ppo"](ctx)
    return ctx, hosts


def test_ppo_learns_its_later_evaluations_beat_an_untrained_policys(monkeypatch):
    """Paired by seed against the same PPO with its updates switched off: a policy that never
    updates samples its initial Gaussian to the end."""
    from stable_baselines3 import PPO

    trained = [late_log_truth(*run_ppo(seed, 48)) for seed in range(6)]
    monkeypatch.setattr(PPO, "train", lambda self: None)
    untrained = [late_log_truth(*run_ppo(seed, 48)) for seed in range(6)]
    gain = np.array(trained) - np.array(untrained)
    assert gain.mean() > 0.4 and (gain > 0).sum() >= 5, gain.round(2)


def test_a_saved_policy_starts_the_next_run_near_what_it_learned(tmp_path):
    """Train on one member of a family, start another member from it: its first evaluations land
    far better than a cold start's."""
    saved = tmp_path / "policy.zip"
    run_ppo(0, 96, policy_out=saved)
    assert saved.exists()
    first = {}
    for name, policy in (("cold", None), ("warm", saved)):
        ctx, hosts = run_ppo(1, 6, optimum=(0.75, 0.75), policy_in=policy)
        first[name] = np.mean([math.log(hosts[0].truth(t.values)) for t in ctx.recorder.search_trials()])
    assert first["warm"] > first["cold"] + 1.0, first


def test_a_policy_for_other_knobs_is_refused_before_any_benchmark(tmp_path):
    saved = tmp_path / "policy.zip"
    run_ppo(0, 6, policy_out=saved)
    three = surface.spec(action_space=[{"param": k, "min": 1, "max": 1_000_000} for k in surface.KNOBS]
                         + [{"param": "net.core.third", "min": 1, "max": 10}])
    host = surface.SurfaceHost("h1")
    host.values["net.core.third"] = "1"
    ctx = surface.context([host], three, budget=3, policy_in=saved)
    with pytest.raises(SpecError, match="trained for 2 action and .* observation dimensions; this spec has 3"):
        STRATEGIES["ppo"](ctx)
    assert ctx.recorder.search_evaluations == 0


def test_training_config_is_honoured_and_episodes_are_counted(tmp_path):
    from stable_baselines3 import PPO

    config = {"learning_rate": 0.01, "n_epochs": 3, "net_arch": [16], "gamma": 0.5, "steps_per_update": 2,
              "clip_range": 0.3, "ent_coef": 0.01, "batch_size": 3, "episode_steps": 2, "algorithm": "PPO"}
    saved = tmp_path / "p.zip"
    ctx, _ = run_ppo(0, 12, training_config=config, policy_out=saved)
    model = PPO.load(saved, device="cpu")
    assert model.learning_rate == 0.01 and model.n_epochs == 3 and model.gamma == 0.5
    assert model.n_steps == 2 and model.batch_size == 3 and model.ent_coef == 0.01
    assert model.clip_range(1.0) == pytest.approx(0.3)
    assert model.policy_kwargs["net_arch"] == [16]
    assert ctx.episodes == 3 * 2  # 4 evaluations per host, 2 per episode
    with pytest.raises(SpecError, match="training_config: unknown key 'learning_rat'"):
        surface.spec(training_config={"learning_rat": 0.01})
    with pytest.raises(SpecError, match="training_config.algorithm: only PPO"):
        surface.spec(training_config={"algorithm": "SAC"})


def test_a_later_run_on_the_same_knobs_starts_from_the_stored_policy(tmp_path):
    """Through tune() on the simulated fleet: every PPO run saves its policy in the store, the next
    run on the same knob set starts from it and says so, --policy none starts cold."""
    from controller.learn.policystore import PolicyStore
    from controller.learn.simfleet import member, sim_fleet
    from controller.runs import RunDir
    from controller.spec import TuningSpec
    from controller.tuner import QuietReporter, RunOptions, tune

    store = PolicyStore(tmp_path / "policies")
    results, said = [], []

    class Reporter(QuietReporter):
        def message(self, text):
            said.append(text)

    for i, policy in enumerate((None, None, "none")):
        m = member(i, 2)
        spec = TuningSpec.from_dict(m.spec_dict())
        run = RunDir.create(spec.workload_name, tmp_path / f"run{i}")
        try:
            results.append(tune(spec, sim_fleet(m, 2, i), run, RunOptions(
                strategy="ppo", budget=6, seed=i, verify_repeats=2, policy=policy, policy_store=store), Reporter()))
        finally:
            run.close()
    first, second, cold = (r["policy"] for r in results)
    assert first["started_from"] is None and first["saved"]
    assert second["started_from"] == first["saved"]
    assert any("starts from the stored policy" in text for text in said)
    assert cold["started_from"] is None
    assert len(store.entries()) == 3 and all(r["total_episodes"] >= 1 for r in results)


def test_moves_start_from_the_best_configuration_so_far():
    """training_config action "move": each round's candidates lie within one move (MOVE_SCALE in the
    unit box) of the best configuration the fleet measured in the rounds before, the originals
    until something beats them; the expert prior, far from the originals, is where moves begin."""
    from controller.learn.env import MOVE_SCALE

    prior = {"values": {k: "300000" for k in surface.KNOBS}, "reason": "near the optimum"}
    the_spec = surface.spec(training_config={"action": "move"}, initial_candidates=[prior])
    hosts = hosts_for(3)
    ctx = surface.context(hosts, the_spec, budget=16, seed=3)
    STRATEGIES["ppo"](ctx)
    trials = ctx.recorder.search_trials()
    assert len(trials) == 16 and trials[0].values == prior["values"]
    far = 0
    for start in range(1, len(trials), len(hosts)):  # round 1: the prior (and two idle hosts)
        best, best_reward = the_spec.to_unit(ctx.originals[hosts[0].name]), 0.0
        for t in trials[:start]:
            if t.ok and t.reward > best_reward:
                best, best_reward = the_spec.to_unit(t.values), t.reward
        for t in trials[start:start + len(hosts)]:
            distance = np.abs(the_spec.to_unit(t.values) - best).max()
            assert distance <= MOVE_SCALE + 0.01, (t.index, distance)  # 0.01: values are rounded to integers
            far += distance > 0.05
    assert far >= 10  # the moves explore; they do not sit on the incumbent


def test_a_policy_acts_only_in_the_action_mode_it_was_trained_for(tmp_path):
    saved = tmp_path / "moves.zip"
    run_ppo(0, 6, policy_out=saved, training_config={"action": "move"})
    ctx, _ = run_ppo(1, 3, policy_in=saved, training_config={"action": "move"})  # same mode: accepted
    assert ctx.recorder.search_evaluations == 3
    hosts = hosts_for(1)
    ctx = surface.context(hosts, surface.spec(), budget=3, policy_in=saved)
    with pytest.raises(SpecError, match="trained with training_config action 'move'; this run's is 'config'"):
        STRATEGIES["ppo"](ctx)
    assert ctx.recorder.search_evaluations == 0
    with pytest.raises(SpecError, match="training_config.action: must be one of move, config"):
        surface.spec(training_config={"action": "jump"})
