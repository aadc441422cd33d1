"""Shared builder of the Visual Match PPO configs (the `ppo_*_match_*.py` files call it).

Every knob a sweep needs is an environment variable, so nobody copies a config file:

====================================  =========  =============================================
variable                              default    meaning
====================================  =========  =============================================
MEMORY_AGENTS_CELL                    per file   any of memory_agents.cells.available_cells()
MEMORY_AGENTS_DELAY                   30         distractor_steps (the memory delay)
MEMORY_AGENTS_SEED                    0          RLlib seed (envs, weights, sampling)
MEMORY_AGENTS_HIDDEN                  128        recurrent hidden size
MEMORY_AGENTS_TIMESTEPS               1000000    stop after this many env steps
MEMORY_AGENTS_NUM_ENVS                16         vectorised envs per env runner
MEMORY_AGENTS_NUM_ENV_RUNNERS         0          remote env runners (0: sample in the trainer)
MEMORY_AGENTS_EVAL_INTERVAL           10         greedy evaluation every N iterations (0: off)
MEMORY_AGENTS_SHUFFLE_COLOURS         0          1: draw the reward room's colour order per
                                                 episode (harder); 0: fixed, as released
====================================  =========  =============================================

Example::

    MEMORY_AGENTS_CELL=gru MEMORY_AGENTS_DELAY=60 MEMORY_AGENTS_SEED=2 \\
        rllib train file configs/ppo_passive_match_ur_lstm.py

Any RLlib setting can also be overridden with ``--config '{"lr": 1e-4}'``.

On a cluster: set MEMORY_AGENTS_NUM_ENV_RUNNERS to the CPUs you can spare (one per
runner) and pass ``--ray-address auto``; the batch grows with the runners (4 episodes per
env per iteration), the learner stays one process. (`.learners(num_gpus_per_learner=1)` puts it
on a GPU, where the cells run their per-step PyTorch-ops loop: correct, not yet fast.)
"""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

from memory_agents.rllib import memory_agent_config

TASK_IDS = {
    "passive": "envs:memory_agents/PassiveVisualMatch-v0",
    "active": "envs:memory_agents/ActiveVisualMatch-v0",
}


def _env_int(name: str, default: int) -> int:
    return int(float(os.environ.get(name, default)))


def build(task: str, cell: str) -> Tuple[Any, Dict[str, Any]]:
    """(config, stop) for PPO on the `task` ("passive" / "active") Visual Match."""
    cell = os.environ.get("MEMORY_AGENTS_CELL", cell)
    delay = _env_int("MEMORY_AGENTS_DELAY", 30)
    config = memory_agent_config(
        TASK_IDS[task],
        algo="PPO",
        cell=cell,
        hidden_size=_env_int("MEMORY_AGENTS_HIDDEN", 128),
        env_config={
            "distractor_steps": delay,
            # The release's training setup: the reward room's colour order is fixed.
            "shuffle_colours": bool(_env_int("MEMORY_AGENTS_SHUFFLE_COLOURS", 0)),
        },
        seed=_env_int("MEMORY_AGENTS_SEED", 0),
        # 2 cores: sample in the trainer process; a cluster raises this (one CPU each).
        num_env_runners=_env_int("MEMORY_AGENTS_NUM_ENV_RUNNERS", 0),
        num_envs_per_env_runner=_env_int("MEMORY_AGENTS_NUM_ENVS", 16),
        # The release's A2C used gamma 0.92 with 120-step episodes; PPO defaults otherwise.
        gamma=0.96,
        # Why these: see memory_agent_config's minibatch default (measured on delay 30).
        lr=1e-3,
        entropy_coeff=0.01,
        num_epochs=8,
        evaluation_interval=_env_int("MEMORY_AGENTS_EVAL_INTERVAL", 10),
        evaluation_episodes=32,
    )
    stop = {"num_env_steps_sampled_lifetime": _env_int("MEMORY_AGENTS_TIMESTEPS", 1_000_000)}
    return config, stop
