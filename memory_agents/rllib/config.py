"""Builders for RLlib configs that use `RecurrentCellModule`, with this machine's defaults.

`memory_agent_config(...)` returns a ready `PPOConfig` (or APPO/IMPALA) for any Gymnasium
env id; `configs/*.py` call it, and so does `rllib train --algo ... --env ...`.

Defaults fit a 2-core laptop: no remote env runners (the driver samples), a few vectorised
envs, one local learner. On a cluster raise ``num_env_runners`` (one CPU each) and
``num_learners`` and scale the batch with them. (On a GPU learner the cells run their per-step
PyTorch-ops loop: correct, not yet fast.)
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Optional

import gymnasium as gym

from memory_agents.rllib.callbacks import MemoryTaskMetrics
from memory_agents.rllib.module import RecurrentCellAPPOModule, RecurrentCellModule

#: Algorithms whose new-API-stack learners accept a stateful (recurrent) RLModule.
SUPPORTED_ALGOS = ("PPO", "APPO", "IMPALA")
#: RLlib seeds sub-env i of env runner w with `seed + w + i`, so seeds 0 and 1 would share
#: all but one env stream; `memory_agent_config(seed=s)` passes `s * SEED_STRIDE` instead.
SEED_STRIDE = 10_000
#: The package that registers our envs on import; ids are passed as "envs:<id>" so that
#: every (remote) env runner imports it before `gym.make`.
ENV_PACKAGE = "envs"


def normalize_env_id(env: str) -> str:
    """Adds the ``envs:`` import prefix to our ids (``memory_agents/...``) when missing."""
    if ":" not in env and env.startswith("memory_agents/"):
        return f"{ENV_PACKAGE}:{env}"
    return env


def check_env_id(env: str) -> str:
    """Returns the normalised id, or raises ValueError naming the registered choices."""
    env = normalize_env_id(env)
    # gym.spec() does not understand "module:id"; gym.make() imports the module first.
    module, _, name = env.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        gym.spec(name)
    except (gym.error.Error, ImportError) as err:
        ours = sorted(k for k in gym.registry if k.startswith("memory_agents/"))
        hint = (
            "registered memory_agents ids: " + ", ".join(ours)
            if ours
            else f"no memory_agents/* ids are registered (is the {ENV_PACKAGE!r} package installed?)"
        )
        raise ValueError(f"Environment id {env!r} is not registered ({err}); {hint}") from None
    return env


def episode_length(env: str, env_config: Optional[Dict[str, Any]] = None) -> Optional[int]:
    """The longest episode of `env` (its TimeLimit, or a minigrid-style `max_steps`)."""
    instance = gym.make(normalize_env_id(env), **(env_config or {}))
    try:
        for candidate in (
            getattr(instance.spec, "max_episode_steps", None),
            getattr(instance.unwrapped, "max_steps", None),
            getattr(instance.unwrapped, "episode_length", None),
        ):
            if isinstance(candidate, int) and candidate > 0:
                return candidate
        return None
    finally:
        instance.close()


def _algo_config_class(algo: str):
    if algo == "PPO":
        from ray.rllib.algorithms.ppo import PPOConfig as config_class
    elif algo == "APPO":
        from ray.rllib.algorithms.appo import APPOConfig as config_class
    else:
        from ray.rllib.algorithms.impala import IMPALAConfig as config_class
    return config_class


def module_spec(
    algo: str = "PPO",
    cell: str = "ur-lstm",
    hidden_size: int = 256,
    max_seq_len: Optional[int] = None,
    **model_config: Any,
):
    """An `RLModuleSpec` of our recurrent module (the APPO variant for APPO)."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    model_config = {"cell": cell, "hidden_size": hidden_size, **model_config}
    if max_seq_len is not None:
        model_config["max_seq_len"] = int(max_seq_len)
    module_class = RecurrentCellAPPOModule if algo.upper() == "APPO" else RecurrentCellModule
    return RLModuleSpec(module_class=module_class, model_config=model_config)


def memory_agent_config(
    env: str,
    *,
    algo: str = "PPO",
    cell: str = "ur-lstm",
    hidden_size: int = 256,
    env_config: Optional[Dict[str, Any]] = None,
    seed: Optional[int] = None,
    model_config: Optional[Dict[str, Any]] = None,
    num_env_runners: int = 0,
    num_envs_per_env_runner: int = 8,
    train_batch_size: Optional[int] = None,
    minibatch_size: Optional[int] = None,
    num_epochs: int = 8,
    lr: float = 1e-3,
    gamma: float = 0.96,
    entropy_coeff: float = 0.01,
    evaluation_interval: Optional[int] = None,
    evaluation_episodes: int = 32,
):
    """An RLlib AlgorithmConfig (new API stack) that trains `RecurrentCellModule` on `env`.

    `max_seq_len` defaults to the env's episode length, so whole episodes are unrolled in
    training (the memory horizon is never cut). The batch defaults to 4 episodes per env,
    in minibatches of an eighth of it.
    Evaluation (greedy actions) runs every `evaluation_interval` iterations when set.
    Seed `s` becomes RLlib seed ``s * SEED_STRIDE`` so that seeds get disjoint env streams.
    """
    algo = algo.upper()
    if algo not in SUPPORTED_ALGOS:
        raise ValueError(f"Unsupported algo {algo!r}; choose one of {SUPPORTED_ALGOS}")
    env = check_env_id(env)
    env_config = dict(env_config or {})
    model_config = dict(model_config or {})
    if "max_seq_len" not in model_config:
        model_config["max_seq_len"] = episode_length(env, env_config) or 256
    horizon = model_config["max_seq_len"]
    if train_batch_size is None:
        train_batch_size = 4 * horizon * num_envs_per_env_runner * max(1, num_env_runners)
    if minibatch_size is None:
        # 8 minibatches of whole episodes: on Visual Match (delay 30) 8 epochs x 8 minibatches
        # at lr 1e-3 reached 90% success at ~450k steps; 4 x 4 at 5e-4 stalled near 65%.
        minibatch_size = max(horizon, train_batch_size // 8)

    config = (
        _algo_config_class(algo)()
        .environment(env, env_config=env_config)
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            # "auto" = train_batch_size / (runners * envs): each iteration samples it once.
            rollout_fragment_length="auto",
        )
        .rl_module(
            rl_module_spec=module_spec(algo, cell, hidden_size, **model_config),
        )
        .callbacks(MemoryTaskMetrics)
        .debugging(seed=None if seed is None else seed * SEED_STRIDE)
    )
    training: Dict[str, Any] = dict(
        train_batch_size_per_learner=train_batch_size, lr=lr, gamma=gamma,
    )
    if algo == "PPO":
        training.update(
            minibatch_size=minibatch_size, num_epochs=num_epochs, lambda_=0.95,
            entropy_coeff=entropy_coeff, vf_loss_coeff=0.5, grad_clip=40.0,
        )
    else:  # IMPALA / APPO: v-trace over whole fragments
        training.update(entropy_coeff=entropy_coeff, vf_loss_coeff=0.5, grad_clip=40.0)
    config.training(**training)
    if evaluation_interval:
        config.evaluation(
            evaluation_interval=evaluation_interval,
            # Counted in env steps (episodes x episode length), not episodes: RLlib re-seeds
            # its envs before every "episodes"-unit evaluation, which replays the same
            # episodes each time; "timesteps" continues the eval envs' streams instead.
            evaluation_duration=evaluation_episodes * horizon,
            evaluation_duration_unit="timesteps",
            evaluation_num_env_runners=0,
            evaluation_config={
                # Greedy actions: otherwise algo.evaluate() explores.
                "explore": False,
                # Report each evaluation's own episodes, not a moving window over the last
                # 100 (three evaluations back), so eval curves do not lag.
                "metrics_num_episodes_for_smoothing": evaluation_episodes,
            },
        )
    return config
