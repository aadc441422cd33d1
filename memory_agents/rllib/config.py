"""Builders for RLlib configs that use `RecurrentCellModule`, with this machine's defaults.

`memory_agent_config(...)` returns a ready `PPOConfig` (or APPO/IMPALA) for any Gymnasium
env id; `configs/*.py` call it, and so does `rllib train --algo ... --env ...`.

Defaults fit a 2-core laptop: one remote env runner that samples the next batch on one core
while the learner, inside the trainer process, trains on the other (`OverlapPPO`). On a
cluster raise ``num_env_runners`` (one CPU each; the batch grows with them) and
``num_learners``. (On a GPU learner the cells run cuDNN or their Triton kernels.)
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Dict, List, Optional

import gymnasium as gym

from memory_agents.rllib import defaults
from memory_agents.rllib.callbacks import MemoryTaskMetrics
from memory_agents.rllib.module import (
    RecurrentCellAPPOModule,
    RecurrentCellModule,
    check_model_config,
    needs_prev_action_reward,
    unknown_key_error,
)

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


def _init_parameters(env: str) -> Optional[List[str]]:
    """Keyword names the env's constructor takes (through its classes' ``**kwargs``), or
    None when it takes arbitrary keywords."""
    entry_point = gym.spec(env.rpartition(":")[2]).entry_point
    if not isinstance(entry_point, str):
        return None
    module, _, name = entry_point.partition(":")
    cls = getattr(importlib.import_module(module), name)
    names: List[str] = []
    for klass in inspect.getmro(cls) if inspect.isclass(cls) else [cls]:
        init = klass.__init__ if inspect.isclass(cls) else klass
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names += [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names  # this class ends the chain of **kwargs
        if klass is object:
            break
    return None


def make_env(env: str, env_config: Optional[Dict[str, Any]] = None, **kwargs: Any) -> gym.Env:
    """`gym.make` with `env_config`; an unknown key or a bad value is a ValueError that names it."""
    env = check_env_id(env)
    env_config = dict(env_config or {})
    valid = _init_parameters(env)
    if valid is not None:
        for key in env_config:
            if key not in valid:
                raise unknown_key_error(f"env_config of {env}", key, [k for k in valid if k != "render_mode"])
    try:
        return gym.make(env, **env_config, **kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        raise ValueError(f"env_config {env_config} is not valid for {env}: {err}") from None


def episode_length(env: str, env_config: Optional[Dict[str, Any]] = None) -> Optional[int]:
    """The longest episode of `env` (its TimeLimit, or a minigrid-style `max_steps`)."""
    instance = make_env(env, env_config)
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


def _algo_config_class(algo: str, overlap_sampling: bool = False):
    if algo == "PPO" and overlap_sampling:
        from memory_agents.rllib.overlap import OverlapPPOConfig as config_class
    elif algo == "PPO":
        from ray.rllib.algorithms.ppo import PPOConfig as config_class
    elif algo == "APPO":
        from ray.rllib.algorithms.appo import APPOConfig as config_class
    else:
        from ray.rllib.algorithms.impala import IMPALAConfig as config_class
    return config_class


def module_spec(
    algo: str = "PPO",
    cell: str = "ur-lstm",
    hidden_size: int = defaults.HIDDEN_SIZE,
    max_seq_len: Optional[int] = None,
    **model_config: Any,
):
    """An `RLModuleSpec` of our recurrent module (the APPO variant for APPO); the
    model_config is checked here, so a bad key or value fails before Ray starts."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    model_config = {"cell": cell, "hidden_size": hidden_size, **model_config}
    if max_seq_len is not None:
        model_config["max_seq_len"] = max_seq_len
    check_model_config(model_config)
    module_class = RecurrentCellAPPOModule if algo.upper() == "APPO" else RecurrentCellModule
    return RLModuleSpec(module_class=module_class, model_config=model_config)


def prev_action_reward_connector(env=None, spaces=None, device=None):
    """The env-to-module connector of the ``prev_action_reward`` option (and of the action and
    reward reconstructions): RLlib's `PrevActionsPrevRewards`, one previous action (one-hot)
    and reward. It writes them into each episode's observations, so the learner's batches
    hold them too; RLlib says it does not work in a learner pipeline, and it need not.
    A module-level function, so that configs and checkpoints pickle it by name."""
    from ray.rllib.connectors.env_to_module import PrevActionsPrevRewards

    return PrevActionsPrevRewards(n_prev_actions=1, n_prev_rewards=1)


def apply_model_options(config):
    """Sets what the module's agent options need on an AlgorithmConfig; returns it.

    - ``prev_action_reward`` (and the action/reward terms of ``reconstruction_weight``):
      the env-to-module connector `prev_action_reward_connector` (a Discrete action space);
    - ``reconstruction_weight`` > 0: the learner class
      `memory_agents.rllib.learner.ReconstructionPPOLearner` (PPO only); otherwise, for PPO,
      `memory_agents.rllib.learner.MemoryPPOLearner` (RLlib's updates, less overhead).

    Options turned off remove what this function set before (not what a user set by hand).
    Checks the options first: a ValueError, before anything is built, names a bad value, an
    algorithm or action space they do not work with, or a connector or learner class of the
    user's own that they would replace. `memory_agent_config` and `rllib train` call it.
    """
    spec = config._rl_module_spec
    if spec is None or not (isinstance(spec.module_class, type)
                            and issubclass(spec.module_class, RecurrentCellModule)):
        return config
    from ray.rllib.algorithms.ppo import PPO

    from memory_agents.rllib.learner import MemoryPPOLearner, ReconstructionPPOLearner

    cfg = check_model_config(spec.model_config)
    needs_connector = needs_prev_action_reward(cfg)
    reconstructs = any(w > 0 for w in cfg["reconstruction_weight"].values())
    if reconstructs and not issubclass(config.algo_class, PPO):
        raise ValueError(f"model_config['reconstruction_weight'] trains through PPO's learner "
                         f"(ReconstructionPPOLearner); {config.algo_class.__name__} has no such "
                         f"learner here: use PPO or set reconstruction_weight to 0")
    if needs_connector and isinstance(config.env, str):
        instance = make_env(config.env, config.env_config)
        action_space = instance.action_space
        instance.close()
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"model_config['prev_action_reward'] and the action/reward "
                             f"reconstructions need a Discrete action space (a one-hot last "
                             f"action); {config.env} has {action_space}")

    connector = config._env_to_module_connector
    if needs_connector:
        if connector not in (None, prev_action_reward_connector):
            raise ValueError(f"model_config['prev_action_reward'] sets the env-to-module connector "
                             f"(RLlib's PrevActionsPrevRewards), but the config has one already: "
                             f"{connector!r}; add PrevActionsPrevRewards to yours instead")
        config.env_runners(env_to_module_connector=prev_action_reward_connector)
    elif connector is prev_action_reward_connector:
        config.env_runners(env_to_module_connector=None)

    learner = config._learner_class
    ours = (None, MemoryPPOLearner, ReconstructionPPOLearner)  # what this function sets, or nothing
    if reconstructs and learner not in ours and not (
            isinstance(learner, type) and issubclass(learner, ReconstructionPPOLearner)):
        raise ValueError(f"model_config['reconstruction_weight'] sets the learner class "
                         f"(ReconstructionPPOLearner), but the config has one already: "
                         f"{learner!r}; subclass ReconstructionPPOLearner instead")
    if learner in ours:
        # PPO's updates with less overhead per minibatch (memory_agents.rllib.learner), plus
        # the reconstruction loss when asked for; other algorithms keep their own learner.
        ppo = issubclass(config.algo_class, PPO)
        config.learners(learner_class=ReconstructionPPOLearner if reconstructs
                        else MemoryPPOLearner if ppo else None)
    return config


def default_minibatch_size(train_batch_size: int, horizon: int) -> int:
    """An eighth of the batch's episodes per minibatch (why 8: `memory_agents.rllib.defaults`),
    at least one, in the learner's steps: RLlib cuts a sequence batch into minibatches of
    ``sequences * minibatch_size / steps`` sequences (rounded down), and the learner holds
    horizon + 1 steps per episode (its bootstrap step). Fewer steps per minibatch than one
    sequence give empty minibatches."""
    episodes = max(1, train_batch_size // horizon // defaults.NUM_MINIBATCHES)
    return episodes * (horizon + 1)


def memory_agent_config(
    env: str,
    *,
    algo: str = "PPO",
    cell: str = "ur-lstm",
    hidden_size: int = defaults.HIDDEN_SIZE,
    env_config: Optional[Dict[str, Any]] = None,
    seed: Optional[int] = None,
    model_config: Optional[Dict[str, Any]] = None,
    num_env_runners: int = defaults.NUM_ENV_RUNNERS,
    num_envs_per_env_runner: int = defaults.NUM_ENVS_PER_ENV_RUNNER,
    num_learners: int = defaults.NUM_LEARNERS,
    overlap_sampling: bool = defaults.OVERLAP_SAMPLING,
    train_batch_size: Optional[int] = None,
    minibatch_size: Optional[int] = None,
    num_epochs: int = defaults.NUM_EPOCHS,
    lr: float = defaults.LR,
    gamma: float = defaults.GAMMA,
    entropy_coeff: float = defaults.ENTROPY_COEFF,
    vf_clip_param: float = defaults.VF_CLIP_PARAM,
    evaluation_interval: Optional[int] = defaults.EVALUATION_INTERVAL,
    evaluation_episodes: int = defaults.EVALUATION_EPISODES,
    prev_action_reward: bool = defaults.PREV_ACTION_REWARD,
    reconstruction_weight: Any = defaults.RECONSTRUCTION_WEIGHT,
):
    """An RLlib AlgorithmConfig (new API stack) that trains `RecurrentCellModule` on `env`.

    Defaults: `memory_agents.rllib.defaults` (shared with the configs and `rllib train`).
    `max_seq_len` defaults to the env's episode length + 1 (the learner's bootstrap step),
    so whole episodes are unrolled in training (the memory horizon is never cut). The batch
    defaults to 64 whole episodes per env runner, in minibatches of an eighth of its episodes.
    Evaluation (greedy actions) runs every `evaluation_interval` iterations (0/None: off).
    `num_learners` learner processes share every minibatch (torch DDP): `train_batch_size`
    and `minibatch_size` are totals over them, split evenly (RLlib's own settings are per
    learner). 0 trains in the trainer process.
    Seed `s` becomes RLlib seed ``s * SEED_STRIDE`` so that seeds get disjoint env streams.
    `overlap_sampling` (PPO with remote env runners): the runners sample the next batch
    while the learner trains on this one (`memory_agents.rllib.overlap.OverlapPPO`).
    `prev_action_reward` and `reconstruction_weight` are the module's agent options of
    DeepMind's TVT release (`memory_agents.rllib.module`); `apply_model_options` sets the
    connector and learner class they need (a `model_config` entry wins over the argument).
    """
    algo = algo.upper()
    if algo not in SUPPORTED_ALGOS:
        raise ValueError(f"Unsupported algo {algo!r}; choose one of {SUPPORTED_ALGOS}")
    env = check_env_id(env)
    env_config = dict(env_config or {})
    model_config = {"prev_action_reward": prev_action_reward,
                    "reconstruction_weight": reconstruction_weight, **(model_config or {})}
    horizon = episode_length(env, env_config) or model_config.get("max_seq_len") or 256
    if "max_seq_len" not in model_config:
        # The episode plus the bootstrap step that the learner appends to every episode for
        # its value targets. With max_seq_len = the episode, that one step became a chunk of
        # its own, zero-padded to a full sequence: half of every minibatch was padding
        # (measured: 15 sequences of 60 steps for 480 valid ones).
        model_config["max_seq_len"] = horizon + 1
    if train_batch_size is None:
        episodes_per_env = -(-defaults.EPISODES_PER_BATCH // num_envs_per_env_runner)  # ceil
        train_batch_size = episodes_per_env * horizon * num_envs_per_env_runner * max(1, num_env_runners)
    if isinstance(num_learners, bool) or not isinstance(num_learners, int) or num_learners < 0:
        raise ValueError(f"num_learners must be an integer >= 0, got {num_learners!r}")
    # RLlib's sizes are per learner: split the totals (rounding up, so nothing is lost).
    shards = max(1, num_learners)
    batch_per_learner = -(-train_batch_size // shards)
    if minibatch_size is None:
        minibatch_per_learner = default_minibatch_size(batch_per_learner, horizon)
    else:
        # At least one whole sequence per learner: RLlib rounds the sequences of a minibatch
        # down, and a learner given none fails on an empty batch.
        minibatch_per_learner = max(-(-minibatch_size // shards), model_config["max_seq_len"])

    config = (
        _algo_config_class(algo, overlap_sampling and num_env_runners > 0)()
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
        # Remote learners: one CPU each and none for the trainer, which samples only while
        # they wait (PPO alternates the two); a 2-core machine then fits 2 learners.
        .learners(num_learners=num_learners, num_cpus_per_learner=1 if num_learners else "auto")
        .resources(num_cpus_for_main_process=0 if num_learners and not overlap_sampling else 1)
        .callbacks(MemoryTaskMetrics)
        .debugging(seed=None if seed is None else seed * SEED_STRIDE)
    )
    training: Dict[str, Any] = dict(
        train_batch_size_per_learner=batch_per_learner, lr=lr, gamma=gamma,
    )
    if algo == "PPO":
        training.update(
            minibatch_size=minibatch_per_learner, num_epochs=num_epochs, lambda_=0.95,
            entropy_coeff=entropy_coeff, vf_loss_coeff=0.5, grad_clip=40.0,
            # Unclipped: RLlib's default clamp (10 on the squared error) starves the critic
            # of the final reward of 10 (defaults.VF_CLIP_PARAM says what it cost).
            vf_clip_param=vf_clip_param,
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
                # One episode per eval env per evaluation (64 training envs would each run
                # only half an episode in the 32 episodes' worth of steps).
                "num_envs_per_env_runner": min(num_envs_per_env_runner, evaluation_episodes),
                # Report each evaluation's own episodes, not a moving window over the last
                # 100 (three evaluations back), so eval curves do not lag.
                "metrics_num_episodes_for_smoothing": evaluation_episodes,
            },
        )
    return apply_model_options(config)
