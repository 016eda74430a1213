"""One gymnasium environment per host.

action       Box[-1, 1]^d, mapped onto each knob's range by the spec (ints rounded, log scale,
             choices discretized, vector components kept in order)
observation  [last reward, metric features..., current knob values in [-1, 1]]; metric features
             are log-ratios to the host's own baseline window, squashed with tanh
reward       relative to the host's measured baseline: perf/baseline - 1 (sign flipped when the
             metric is minimized), clipped; a failed apply or benchmark scores the floor
episode      a few steps; more than MAX_FAILURES consecutive failures end it early
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from controller.learn.evaluation import REWARD_CEIL, REWARD_FLOOR, HostEvaluator, Trial

MAX_FAILURES = 3

# The seed's metric names -> the agent's (docs/protocol.md, Metrics).
METRIC_ALIASES = {
    "cpu_utilization": "cpu_util", "cpu_usage": "cpu_util", "io_wait": "cpu_iowait", "iowait": "cpu_iowait",
    "mem_utilization": "mem_used_pct", "memory_utilization": "mem_used_pct", "mem_pressure": "psi_mem_some",
    "memory_pressure": "psi_mem_some", "io_pressure": "psi_io_some", "cpu_pressure": "psi_cpu_some",
    "context_switches": "ctxt_per_s", "load_average": "load1", "tcp_retransmits": "tcp_retrans_per_s",
    "listen_overflows": "tcp_listen_overflows",
}
DEFAULT_METRICS = ("cpu_util", "cpu_iowait", "mem_used_pct", "ctxt_per_s", "tcp_retrans_per_s", "tcp_listen_overflows")


def observed_metrics(spec) -> list[str]:
    names = []
    for item in getattr(spec, "state_space", None) or []:
        name = item.metric if hasattr(item, "metric") else item.get("metric")
        name = METRIC_ALIASES.get(name, name)
        if name not in names:
            names.append(name)
    return names or list(DEFAULT_METRICS)


class HostEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, evaluator: HostEvaluator, spec, *, originals: dict[str, str],
                 baseline_metrics: dict[str, float] | None = None, episode_steps: int = 4):
        super().__init__()
        self.evaluator = evaluator
        self.spec = spec
        self.originals = dict(originals)
        self.metric_names = observed_metrics(spec)
        self.baseline_metrics = dict(baseline_metrics or {})
        self.episode_steps = episode_steps
        d = spec.action_dim
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(d,), dtype=np.float32)
        n_obs = 1 + len(self.metric_names) + d
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(n_obs,), dtype=np.float32)
        self._steps = 0
        self._failures = 0
        self._obs = self._initial_obs()
        self.last_trial: Trial | None = None

    def _initial_obs(self) -> np.ndarray:
        return self._observe(0.0, self.baseline_metrics, self.originals)

    def _observe(self, reward: float, metrics: dict[str, float], values: dict[str, str]) -> np.ndarray:
        features = [_ratio_feature(metrics.get(m), self.baseline_metrics.get(m)) for m in self.metric_names]
        scaled_reward = reward / REWARD_CEIL if reward >= 0 else reward / -REWARD_FLOOR
        knobs = self.spec.to_unit({**self.originals, **values})
        obs = np.concatenate([[scaled_reward], features, knobs]).astype(np.float32)
        return np.clip(obs, -1.0, 1.0)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._steps = 0
        self._failures = 0
        # No benchmark on reset: evaluations are the expensive resource. A new episode starts
        # from what the host looks like now (its last observation).
        return self._obs.copy(), {}

    def step(self, action):
        if self.evaluator.dropped:  # the run gave up on this host: no more benchmarks here
            return self._obs.copy(), 0.0, True, False, {"dropped": self.evaluator.dropped}
        values = self.spec.to_values(np.asarray(action, dtype=np.float64))
        trial = self.evaluator.evaluate(values)
        self.last_trial = trial
        self._steps += 1
        if trial.ok:
            self._failures = 0
            self._obs = self._observe(trial.reward, trial.metrics, values)
        else:
            self._failures += 1
            self._obs = self._observe(trial.reward, {}, values)
        terminated = self._failures > MAX_FAILURES or self.evaluator.lost is not None
        truncated = self._steps >= self.episode_steps
        return self._obs.copy(), float(trial.reward), terminated, truncated, {"trial": trial}


def _ratio_feature(value: float | None, base: float | None) -> float:
    """tanh of the log-ratio to the baseline window: 0 = as in the baseline, +-1 = orders apart."""
    if value is None or base is None:
        return 0.0
    return math.tanh(math.log1p(max(value, 0.0)) - math.log1p(max(base, 0.0)))
