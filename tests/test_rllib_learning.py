"""Slow learning check: PPO with our recurrent module learns a cue-delay-choice memory task.

    .venv/bin/python -m pytest tests/test_rllib_learning.py -m slow -q     (about 2 minutes)

The task is the memory core of Visual Match without the rooms: a one-hot colour cue at
step 0, `delay` blank steps, then a "choose" step where action == cue pays 1. Chance is
1/3; without memory no policy beats it. Both cells must reach 90% greedy success.
"""

import gymnasium as gym
import numpy as np
import pytest
import ray
import torch

from memory_agents.rllib import memory_agent_config

ENV_ID = "memory_agents_test/CueDelayChoice-v0"
DELAY = 10


class CueDelayChoice(gym.Env):
    """Observation: [cue one-hot (3), choose flag]; the cue shows only at step 0."""

    def __init__(self, delay: int = DELAY):
        self.delay = delay
        self.observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Discrete(3)

    def _obs(self):
        obs = np.zeros(4, np.float32)
        if self.t == 0:
            obs[self.cue] = 1.0
        if self.t == self.delay + 1:
            obs[3] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.cue = 0, int(self.np_random.integers(3))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        if self.t <= self.delay + 1:
            return self._obs(), 0.0, False, False, {}
        reward = float(action == self.cue)
        info = {"last_phase_reward": reward, "success": reward}
        return self._obs(), reward, True, False, info


@pytest.mark.slow
@pytest.mark.parametrize("cell,prev_action_reward", [("ur-lstm", False), ("lstm", False), ("ur-lstm", True)])
def test_ppo_learns_to_remember_the_cue(cell, prev_action_reward):
    torch.set_num_threads(1)
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=CueDelayChoice, max_episode_steps=DELAY + 2)
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    config = memory_agent_config(
        # Sampling in this process: the env is registered here only, not in remote runners.
        ENV_ID, cell=cell, hidden_size=32, seed=0, num_env_runners=0, num_envs_per_env_runner=8,
        prev_action_reward=prev_action_reward,
        lr=1e-3, entropy_coeff=0.0, evaluation_interval=1, evaluation_episodes=64,
        model_config={"fcnet_hiddens": [32], "embed_dim": 32},
    )
    algo = config.build_algo()
    try:
        best = 0.0
        for _ in range(200):
            result = algo.train()
            best = max(best, result["evaluation"]["env_runners"]["success"])
            if best >= 0.9:
                break
        assert best >= 0.9, f"{cell}: best greedy success {best:.2f} after 200 iterations"
    finally:
        algo.stop()
        ray.shutdown()
