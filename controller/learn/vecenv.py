"""FleetVecEnv: a stable-baselines3 VecEnv whose hosts step concurrently.

`step_async` hands every host's step (apply + benchmark + metrics) to the executor at once and
`step_wait` gathers them, so N hosts give N evaluations in the time of one. Everything else
(resets, buffers, attribute access) is DummyVecEnv's.
"""

from __future__ import annotations

from copy import deepcopy

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from controller.fleet.executor import Executor, gather
from controller.learn.env import HostEnv


class FleetVecEnv(DummyVecEnv):
    def __init__(self, envs: list[HostEnv], executor: Executor):
        super().__init__([(lambda e=e: e) for e in envs])
        self.executor = executor

    def step_async(self, actions: np.ndarray) -> None:
        self._futures = [self.executor.submit(env.step, actions[i]) for i, env in enumerate(self.envs)]

    def step_wait(self):
        results = gather(self._futures)
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
