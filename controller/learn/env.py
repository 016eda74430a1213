"""One gymnasium environment per host: the OS tuning environment whose state is the system's metrics.

action       Box[-1, 1]^d, read one of two ways (training_config ``action``):
             "config" (the default): the next configuration itself, anywhere in the box;
             "move": a bounded move from the fleet's best configuration so far, in the spec's unit
             box (each coordinate moves by at most MOVE_SCALE, half the box).
             Either way the spec maps the point onto each knob's range (ints rounded, log scale,
             choices discretized, vector components kept in order).
observation  [the configuration the action starts from, in [-1, 1]^d] + [its metric feature vector
             (controller/learn/features.py: what the kernel did during its benchmark, relative to
             this host's baseline)] + [tanh(its reward / 2)]
             "move": the fleet's best configuration so far (the originals until one beats them);
             "config": the host's last evaluated configuration (episodes start at the originals)
reward       the log-ratio of the benchmark's result to this host's baseline (evaluation.py);
             a failed apply or benchmark scores FAILURE_REWARD
episode      `episode_steps` evaluations; more than MAX_FAILURES consecutive failures end it early

The observation's length depends only on the action dimension, never on the spec's state_space,
so a policy saved for one knob set acts on any host and workload with the same knobs.
docs/strategies.md compares the two on the simulated family: with a policy trained on other
members, whole configurations chose better ones at budgets 12 and 24, so they are the default.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from controller.learn import features
from controller.learn.evaluation import HostEvaluator, Trial

if TYPE_CHECKING:
    from controller.spec import TuningSpec

MAX_FAILURES = 3
MOVE_SCALE = 1.0  # "move": an action coordinate of 1 moves the knob by half its unit box


class Incumbent:
    """The fleet's best evaluation so far, shared by every host's environment in "move" mode: the
    point each move starts from. Starts at the originals (reward 0, features 0, as the baseline
    measured them); a search evaluation replaces it when its reward is higher."""

    def __init__(self, spec: TuningSpec, originals: dict[str, str]):
        self.spec = spec
        self.values = dict(originals)
        self.reward = 0.0
        self.features: dict[str, float] = {}

    def offer(self, trial: Trial) -> bool:
        if trial.ok and trial.reward is not None and trial.reward > self.reward:
            self.values, self.reward, self.features = dict(trial.values), float(trial.reward), dict(trial.features)
            return True
        return False

    def unit(self) -> np.ndarray:
        return np.asarray(self.spec.to_unit(self.values), dtype=np.float64)

    def observation(self) -> np.ndarray:
        return observation(self.unit(), self.features, self.reward)


def move_point(start: np.ndarray, action) -> np.ndarray:
    """"move": the point in the unit box an action leads to from `start` (MOVE_SCALE per unit of action)."""
    return np.clip(np.asarray(start, dtype=np.float64) + MOVE_SCALE * np.clip(np.asarray(action, dtype=np.float64),
                                                                                -1.0, 1.0), -1.0, 1.0)


def observation_size(action_dim: int) -> int:
    return action_dim + features.SIZE + 1


def observation(knobs: np.ndarray, named: dict[str, float] | None, reward: float) -> np.ndarray:
    """The observation from the knob values in [-1, 1]^d, an evaluation's named features and its reward."""
    obs = np.concatenate([knobs, features.vector(named), [math.tanh(reward / 2.0)]]).astype(np.float32)
    return np.clip(obs, -1.0, 1.0)


class HostEnv(gym.Env):
    metadata = {"render_modes": []}
    # gymnasium's Env.spec (a registration EnvSpec, None for an env made directly) holds the tuning spec here
    spec: TuningSpec  # type: ignore[assignment]

    def __init__(self, evaluator: HostEvaluator, spec: TuningSpec, *, originals: dict[str, str], episode_steps: int = 4,
                 incumbent: Incumbent | None = None):
        """``incumbent``: "move" mode, the fleet's shared best; None: "config" mode."""
        super().__init__()
        self.incumbent = incumbent
        self.evaluator = evaluator
        self.spec = spec
        self.originals = dict(originals)
        self.episode_steps = episode_steps
        d = spec.action_dim
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(d,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(observation_size(d),), dtype=np.float32)
        self._steps = 0
        self._failures = 0
        self.episodes = 0  # episodes begun (a step was taken in them)
        # Every episode starts from the host as the baseline measured it: its originals, features 0.
        self._start = self._observe(0.0, {}, self.originals)
        self._obs = self._start.copy()
        self.last_trial: Trial | None = None

    def _observe(self, reward: float, named: dict[str, float], values: dict[str, str]) -> np.ndarray:
        return observation(self.spec.to_unit({**self.originals, **values}), named, reward)

    def features_of(self, obs: np.ndarray) -> np.ndarray:
        """The metric-feature part of an observation."""
        d = self.spec.action_dim
        return np.asarray(obs)[d:d + features.SIZE]

    def values_for(self, action) -> dict[str, str]:
        """The configuration an action stands for: a move from the incumbent, or the point itself."""
        if self.incumbent is not None:
            return self.spec.to_values(move_point(self.incumbent.unit(), action))
        return self.spec.to_values(np.asarray(action, dtype=np.float64))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._steps = 0
        self._failures = 0
        if self.incumbent is not None:
            self._obs = self.incumbent.observation()
            return self._obs.copy(), {}
        # No benchmark on reset: evaluations are the expensive resource, and the baseline already
        # measured the originals. Each step applies a whole configuration, so the knobs left on the
        # host by the last episode do not change what the next step measures.
        self._obs = self._start.copy()
        return self._obs.copy(), {}

    def step(self, action, trial: Trial | None = None):
        """`trial`: this action's evaluation when the caller ran it already (FleetVecEnv evaluates
        a round of hosts at once)."""
        if self.evaluator.dropped and trial is None:  # the run gave up on this host: no more benchmarks here
            return self._obs.copy(), 0.0, True, False, {"dropped": self.evaluator.dropped}
        if trial is None:
            trial = self.evaluator.evaluate(self.values_for(action))
            if self.incumbent is not None:
                self.incumbent.offer(trial)
        self.last_trial = trial
        if self._steps == 0:
            self.episodes += 1
        self._steps += 1
        self._failures = 0 if trial.ok else self._failures + 1
        reward = trial.reward
        assert reward is not None  # a search evaluation has one, a failed one FAILURE_REWARD
        # A failed run still has features (a timed-out storm shows its overflows).
        self._obs = (self.incumbent.observation() if self.incumbent is not None
                     else self._observe(reward, trial.features, trial.values))
        terminated = self._failures > MAX_FAILURES or self.evaluator.lost is not None
        truncated = self._steps >= self.episode_steps
        return self._obs.copy(), float(reward), terminated, truncated, {"trial": trial}
