"""PPO (stable-baselines3) sized for few, expensive steps.

Every step is a real benchmark on a real host, so the usual PPO settings (2048 steps per update)
would never finish. Here a rollout is a handful of fleet steps (batch = steps x hosts), the
network is small, and the learning rate is high enough to move within a few updates. The budget
is enforced by a callback that stops learning once the fleet has spent it. The spec's
training_config overrides any of these settings (controller/training.py).

A run may start from a policy saved by an earlier run (``ctx.policy_in``): its weights, its
exploration noise and its network shape; the rest of the settings are this run's. It must have
been trained for the same observation and action shapes (the same knob set: the metric feature
vector has one fixed length), otherwise the run stops with an error before any benchmark.
"""

from __future__ import annotations

from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger, make_output_format

from controller import training
from controller.errors import SpecError
from controller.fleet.executor import ThreadExecutor
from controller.learn.env import HostEnv, Incumbent, observation_size
from controller.learn.search import SearchContext, evaluate_priors
from controller.learn.strategies import register
from controller.learn.vecenv import FleetVecEnv

ACTION_MODE_ATTR = "tunefleet_action"  # saved with the policy: how its actions are read (env.py)
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


def settings_of(ctx: SearchContext) -> dict:
    """The effective PPO settings: the context's validated training dict, else the spec's."""
    given = ctx.training if ctx.training is not None else getattr(ctx.spec, "training_config", None)
    return training.validate({k: v for k, v in (given or {}).items() if v is not None})


def saved_shapes(path: Path) -> dict:
    """Observation and action sizes and the network of a saved policy (no model is built)."""
    from stable_baselines3.common.save_util import load_from_zip_file

    try:
        data, _, _ = load_from_zip_file(str(path), device="cpu")
    except (OSError, ValueError, KeyError) as e:
        raise SpecError(f"policy {path}: cannot be read as a saved PPO policy: {e}") from None
    if data is None:
        raise SpecError(f"policy {path}: cannot be read as a saved PPO policy: it holds no data")
    return {"observation": int(data["observation_space"].shape[0]), "action": int(data["action_space"].shape[0]),
            "net_arch": list((data.get("policy_kwargs") or {}).get("net_arch") or []),
            # policies saved before moves existed acted with whole configurations
            "action_mode": str(data.get(ACTION_MODE_ATTR, "config"))}


def check_policy(path: Path, action_dim: int, action_mode: str = "config") -> dict:
    """The saved policy's shapes, or a SpecError saying why it cannot act on this knob set and
    action mode (training_config ``action``)."""
    shapes = saved_shapes(path)
    if shapes["action_mode"] != action_mode:
        raise SpecError(f"policy {path} was trained with training_config action {shapes['action_mode']!r}; this "
                        f"run's is {action_mode!r}: start cold (--policy none) or set action to "
                        f"{shapes['action_mode']!r}")
    want = {"observation": observation_size(action_dim), "action": action_dim}
    if shapes["observation"] != want["observation"] or shapes["action"] != want["action"]:
        raise SpecError(f"policy {path} was trained for {shapes['action']} action and {shapes['observation']} "
                        f"observation dimensions; this spec has {want['action']} and {want['observation']}: "
                        "start cold (--policy none) or pick a policy trained on the same knobs")
    return shapes


def make_model(venv, *, n_steps: int, seed: int, settings: dict | None = None, verbose: int = 0) -> PPO:
    s = {**training.DEFAULTS, **(settings or {})}
    batch = s["batch_size"] or n_steps * venv.num_envs
    return PPO(
        "MlpPolicy", venv,
        n_steps=n_steps,
        batch_size=batch,
        n_epochs=s["n_epochs"],
        learning_rate=s["learning_rate"],
        # gamma 0 by default: each step applies a whole configuration and its reward depends on
        # that configuration alone (docs/strategies.md, the environment).
        gamma=s["gamma"],
        gae_lambda=s["gae_lambda"],
        clip_range=s["clip_range"],
        ent_coef=s["ent_coef"],
        vf_coef=s["vf_coef"],
        max_grad_norm=s["max_grad_norm"],
        normalize_advantage=batch > 1,
        policy_kwargs={"net_arch": list(s["net_arch"]), "log_std_init": s["log_std_init"]},
        seed=seed,
        device="cpu",
        verbose=verbose,
    )


def steps_per_update(rounds: int) -> int:
    """Fleet steps per update: STEPS_PER_UPDATE, fewer when the budget would allow under MIN_UPDATES
    updates (12 evaluations on 3 hosts = 4 rounds: update after every round, not once at the end)."""
    return max(1, min(STEPS_PER_UPDATE, rounds // MIN_UPDATES))


@register("ppo")
def search(ctx: SearchContext) -> None:
    """The spec's priors first, then PPO on what the budget leaves (it steps every host at once)."""
    evaluate_priors(ctx)
    if ctx.remaining >= len(ctx.live()):
        ppo_search(ctx)


def ppo_search(ctx: SearchContext) -> None:
    settings = settings_of(ctx)
    if ctx.policy_in is not None:
        shapes = check_policy(Path(ctx.policy_in), ctx.spec.action_dim, settings["action"])
        if shapes["net_arch"] and shapes["net_arch"] != settings["net_arch"]:
            ctx.log(f"starting from {ctx.policy_in}: its network {shapes['net_arch']} replaces {settings['net_arch']}")
            settings["net_arch"] = shapes["net_arch"]
    hosts = [ev.name for ev in ctx.live()]
    episode_steps = settings["episode_steps"] or ctx.episode_steps
    incumbent = None
    if settings["action"] == "move":  # every move starts from the best the fleet found: priors, a resumed run's
        incumbent = Incumbent(ctx.spec, ctx.originals[hosts[0]])
        for trial in ctx.recorder.search_trials():
            incumbent.offer(trial)
    envs = [HostEnv(ctx.evaluators[n], ctx.spec, originals=ctx.originals[n], episode_steps=episode_steps,
                    incumbent=incumbent) for n in hosts]
    executor = ctx.executor or ThreadExecutor(len(envs))
    venv = FleetVecEnv(envs, executor)
    rounds = max(1, ctx.remaining // len(envs))
    model = make_model(venv, n_steps=settings["n_steps"] or steps_per_update(rounds), seed=ctx.seed,
                       settings=settings)
    if ctx.policy_in is not None:
        model.set_parameters(str(ctx.policy_in), exact_match=True, device="cpu")
    setattr(model, ACTION_MODE_ATTR, settings["action"])
    callbacks: list[BaseCallback] = [BudgetCallback(ctx, hosts)]
    outputs = []
    if ctx.checkpoint_dir is not None:
        outputs.append(make_output_format("csv", str(ctx.checkpoint_dir)))
        callbacks.append(CheckpointEveryUpdate(Path(ctx.checkpoint_dir)))
    if ctx.tensorboard_dir is not None:  # --tensorboard: train/* and rollout/* curves
        outputs.append(make_output_format("tensorboard", str(Path(ctx.tensorboard_dir) / "ppo")))
    if outputs:
        model.set_logger(Logger(None, outputs))
    try:
        model.learn(total_timesteps=rounds * len(envs), callback=CallbackList(callbacks))
    finally:
        ctx.episodes = sum(env.episodes for env in envs)
    if ctx.checkpoint_dir is not None:
        model.save(Path(ctx.checkpoint_dir) / "ppo_final")
    if ctx.policy_out is not None:
        Path(ctx.policy_out).parent.mkdir(parents=True, exist_ok=True)
        model.save(ctx.policy_out)
