"""Shared builder of the Visual Match PPO configs (the `ppo_*_match_*.py` files call it).

Every knob a sweep needs is an environment variable, so nobody copies a config file:

====================================  =========  =============================================
variable                              default    meaning
====================================  =========  =============================================
MEMORY_AGENTS_CELL                    per file   any of memory_agents.cells.available_cells()
MEMORY_AGENTS_DELAY                   30         distractor_steps (the memory delay)
MEMORY_AGENTS_SEED                    0          RLlib seed (envs, weights, sampling)
MEMORY_AGENTS_HIDDEN                  128        recurrent hidden size
MEMORY_AGENTS_TIMESTEPS               2000000    stop after this many env steps
MEMORY_AGENTS_NUM_ENVS                64         vectorised envs per env runner
MEMORY_AGENTS_NUM_ENV_RUNNERS         1          remote env runners (0: sample in the trainer)
MEMORY_AGENTS_NUM_LEARNERS            0          learner processes sharing each minibatch
                                                 (one CPU each; 0: learn in the trainer)
MEMORY_AGENTS_OVERLAP_SAMPLING        1          remote runners sample the next batch while
                                                 the learner trains on this one (OverlapPPO;
                                                 0: sample, then learn, as RLlib's PPO)
MEMORY_AGENTS_EVAL_INTERVAL           10         greedy evaluation every N iterations (0: off)
MEMORY_AGENTS_COLOUR_ORDER            instance   the reward room's colours: "instance" (the
                                                 release's rule: one order per env instance),
                                                 "fixed" (red, green, blue: the easier variant)
                                                 or "episode" (one per episode)
MEMORY_AGENTS_PREV_ACTION_REWARD      0          1: the one-hot last action and the last
                                                 reward are inputs of the core (the TVT
                                                 release's agent; model_config
                                                 prev_action_reward)
MEMORY_AGENTS_RECONSTRUCTION          0          weight of the auxiliary reconstruction loss
                                                 (image, last action, last reward), in
                                                 multiples of the release's weights (1 = the
                                                 release's; 0 = off; model_config
                                                 reconstruction_weight)
====================================  =========  =============================================

Example::

    MEMORY_AGENTS_CELL=gru MEMORY_AGENTS_DELAY=60 MEMORY_AGENTS_SEED=2 \\
        rllib train file configs/ppo_passive_match_ur_lstm.py

Any RLlib setting can also be overridden with ``--config '{"lr": 1e-4}'``.

On a cluster: set MEMORY_AGENTS_NUM_ENV_RUNNERS to the CPUs you can spare (one per
runner) and pass ``--ray-address auto``; the batch grows with the runners (64 whole
episodes per runner per iteration) and is shared by MEMORY_AGENTS_NUM_LEARNERS learners.
(`.learners(num_gpus_per_learner=1)` puts each learner on a GPU, where the cells run their
per-step PyTorch-ops loop: correct, not yet fast.)
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from memory_agents.rllib import defaults, memory_agent_config
from memory_agents.rllib.defaults import env_knob

TASK_IDS = {
    "passive": "envs:memory_agents/PassiveVisualMatch-v0",
    "active": "envs:memory_agents/ActiveVisualMatch-v0",
}


def build(task: str, cell: str, colour_order: str = defaults.COLOUR_ORDER,
          entropy_coeff: float = defaults.ENTROPY_COEFF) -> Tuple[Any, Dict[str, Any]]:
    """(config, stop) for PPO on the `task` ("passive" / "active") Visual Match.

    Every default lives in `memory_agents.rllib.defaults` (shared with `rllib train
    --algo/--env` and the match experiment); the variables above override them, and
    ``--config`` overrides the rest. `colour_order` and `entropy_coeff` are a config file's
    own defaults (the fixed-order file sets both).
    """
    config = memory_agent_config(
        TASK_IDS[task],
        algo="PPO",
        cell=env_knob("MEMORY_AGENTS_CELL", cell, str),
        hidden_size=env_knob("MEMORY_AGENTS_HIDDEN", defaults.HIDDEN_SIZE),
        env_config={
            "distractor_steps": env_knob("MEMORY_AGENTS_DELAY", 30),
            # "instance", the release's rule; why, in memory_agents.rllib.defaults.COLOUR_ORDER.
            "colour_order": env_knob("MEMORY_AGENTS_COLOUR_ORDER", colour_order, str),
        },
        seed=env_knob("MEMORY_AGENTS_SEED", 0),
        entropy_coeff=entropy_coeff,
        num_env_runners=env_knob("MEMORY_AGENTS_NUM_ENV_RUNNERS", defaults.NUM_ENV_RUNNERS),
        num_envs_per_env_runner=env_knob("MEMORY_AGENTS_NUM_ENVS", defaults.NUM_ENVS_PER_ENV_RUNNER),
        num_learners=env_knob("MEMORY_AGENTS_NUM_LEARNERS", defaults.NUM_LEARNERS),
        overlap_sampling=env_knob("MEMORY_AGENTS_OVERLAP_SAMPLING", defaults.OVERLAP_SAMPLING, bool),
        evaluation_interval=env_knob("MEMORY_AGENTS_EVAL_INTERVAL", defaults.EVALUATION_INTERVAL),
        prev_action_reward=env_knob("MEMORY_AGENTS_PREV_ACTION_REWARD", defaults.PREV_ACTION_REWARD, bool),
        reconstruction_weight=env_knob("MEMORY_AGENTS_RECONSTRUCTION", defaults.RECONSTRUCTION_WEIGHT, float),
    )
    stop = {defaults.STOP_KEY: env_knob("MEMORY_AGENTS_TIMESTEPS", defaults.TIMESTEPS)}
    return config, stop
