"""FleetVecEnv: a stable-baselines3 VecEnv whose hosts step concurrently.

`step_async` submits every host's evaluation (apply + benchmark + metrics) at once and
`step_wait` gathers them, then steps each env with its trial, so N hosts give N evaluations in the
time of one. The evaluations run where HostEvaluator.submit puts them: in the executor's threads,
or one call each in the hosts' Ray actors, awaited together. Everything else (resets, buffers,
attribute access) is DummyVecEnv's. In "move" mode the hosts share one incumbent (env.py): the
round's trials are offered to it before any host's step, so every host's next observation, and
the point its next move starts from, is the best configuration the fleet has found.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from controller.fleet.executor import Executor, gather
from controller.learn.env import HostEnv


def _made(env: HostEnv) -> Callable[[], HostEnv]:
    """DummyVecEnv builds its envs from functions: one that gives back an env made already."""
    return lambda: env


class FleetVecEnv(DummyVecEnv):
    def __init__(self, envs: list[HostEnv], executor: Executor):
        super().__init__([_made(e) for e in envs])
        self.executor = executor
        self.host_envs = envs  # self.envs, as HostEnvs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self._futures = {}
        for i, env in enumerate(self.host_envs):
            if not env.evaluator.dropped:  # a dropped host's env answers its step without a benchmark
                self._futures[i] = env.evaluator.submit(self.executor, env.values_for(actions[i]))

    def step_wait(self):
        trials = dict(zip(self._futures, gather(list(self._futures.values()))))
        for i, trial in trials.items():  # "move": the round's best becomes every host's next start
            incumbent = self.host_envs[i].incumbent
            if incumbent is not None:
                incumbent.offer(trial)
        results = [env.step(self._actions[i], trial=trials.get(i)) for i, env in enumerate(self.host_envs)]
        for i, (obs, reward, terminated, truncated, info) in enumerate(results):
            self.buf_rews[i] = reward
            self.buf_dones[i] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[i]:
                info["terminal_observation"] = obs
                obs, self.reset_infos[i] = self.envs[i].reset()
            self.buf_infos[i] = info
            self._save_obs(i, obs)
        return self._obs_from_buf(), np.copy(self.buf_rews), np.copy(self.buf_dones), deepcopy(self.buf_infos)
