"""PPO (stable-baselines3) sized for few, expensive steps.

Every step is a real benchmark on a real host, so the usual PPO settings (2048 steps per update)
would never finish. Here a rollout is a handful of fleet steps (batch = steps x hosts), the
network is small, and the learning rate is high enough to move within a few updates. The budget
is enforced by a callback that stops learning once the fleet has spent it.
"""

from __future__ import annotations

from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure

from controller.fleet.executor import ThreadExecutor
from controller.learn.env import HostEnv
from controller.learn.search import SearchContext
from controller.learn.strategies import register
from controller.learn.vecenv import FleetVecEnv

STEPS_PER_UPDATE = 4  # fleet steps per PPO update (each host contributes one evaluation per step)
MIN_UPDATES = 4       # small budgets update more often: a policy that never updates is a random sampler


class BudgetCallback(BaseCallback):
    """Stops learning when the search budget is spent; drops hosts that keep failing."""

    def __init__(self, ctx: SearchContext, hosts: list[str]):
        super().__init__()
        self.ctx = ctx
        self.hosts = hosts

    def _on_step(self) -> bool:
        for name in self.hosts:
            self.ctx.note_outcome(name)
        return self.ctx.remaining >= len(self.ctx.live()) and bool(self.ctx.live())


class CheckpointEveryUpdate(BaseCallback):
    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def _on_rollout_end(self) -> None:
        self.model.save(self.path / "ppo_latest")

    def _on_step(self) -> bool:
        return True


def make_model(venv, *, n_steps: int, seed: int, verbose: int = 0) -> PPO:
    batch = n_steps * venv.num_envs
    return PPO(
        "MlpPolicy", venv,
        n_steps=n_steps,
        batch_size=batch,
        n_epochs=10,
        learning_rate=3e-3,
        # Each step applies a whole configuration and its reward depends on that configuration
        # alone: a contextual bandit. Discounting later steps' rewards into it only adds noise.
        gamma=0.0,
        gae_lambda=0.9,
        clip_range=0.2,
        ent_coef=0.0,
        normalize_advantage=batch > 1,
        policy_kwargs={"net_arch": [32, 32], "log_std_init": -0.5},
        seed=seed,
        device="cpu",
        verbose=verbose,
    )


def steps_per_update(rounds: int) -> int:
    """Fleet steps per update: STEPS_PER_UPDATE, fewer when the budget would allow under MIN_UPDATES
    updates (12 evaluations on 3 hosts = 4 rounds: update after every round, not once at the end)."""
    return max(1, min(STEPS_PER_UPDATE, rounds // MIN_UPDATES))


@register("ppo")
def ppo_search(ctx: SearchContext) -> None:
    hosts = [ev.name for ev in ctx.live()]
    envs = [
        HostEnv(ctx.evaluators[n], ctx.spec, originals=ctx.originals[n],
                baseline_metrics=ctx.baseline_metrics.get(n), episode_steps=ctx.episode_steps)
        for n in hosts
    ]
    executor = ctx.executor or ThreadExecutor(len(envs))
    venv = FleetVecEnv(envs, executor)
    rounds = max(1, ctx.remaining // len(envs))
    model = make_model(venv, n_steps=steps_per_update(rounds), seed=ctx.seed)
    callbacks = [BudgetCallback(ctx, hosts)]
    if ctx.checkpoint_dir is not None:
        model.set_logger(configure(str(ctx.checkpoint_dir), ["csv"]))
        callbacks.append(CheckpointEveryUpdate(Path(ctx.checkpoint_dir)))
    model.learn(total_timesteps=rounds * len(envs), callback=CallbackList(callbacks))
    if ctx.checkpoint_dir is not None:
        model.save(Path(ctx.checkpoint_dir) / "ppo_final")
