"""Run RLlib training through `ray.tune.Tuner` (what `rllib train` does).

Tune writes, under ``<storage_path>/<experiment_name>/<trial>/``: ``progress.csv``,
``result.json``, TensorBoard ``events.out.tfevents.*`` and ``checkpoint_*/`` folders
(each an RLlib Algorithm checkpoint; its RLModule lies in
``learner_group/learner/rl_module/default_policy``).
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

DEFAULT_STORAGE_PATH = "~/ray_results"


def load_config_file(path: str) -> Tuple[Any, Optional[Dict[str, Any]]]:
    """Executes a Python config file; returns its `config` (AlgorithmConfig) and `stop`."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"Config file {path!r} does not exist")
    namespace = runpy.run_path(str(file), run_name="__rllib_config__")
    if "config" not in namespace:
        raise ValueError(f"{path} must define a variable `config` (an RLlib AlgorithmConfig)")
    return namespace["config"], namespace.get("stop")


def apply_overrides(config, overrides: Optional[Dict[str, Any]]):
    """Applies a ``--config`` JSON dict to an AlgorithmConfig.

    Keys are AlgorithmConfig settings (``lr``, ``num_env_runners``, ``env_config``, ...);
    ``model_config`` is merged into the RLModule spec's model_config, e.g.
    ``{"model_config": {"cell": "gru", "hidden_size": 128}}``.
    """
    overrides = dict(overrides or {})
    model_config = overrides.pop("model_config", None)
    if overrides:
        config.update_from_dict(overrides)
    if model_config:
        spec = config._rl_module_spec
        if spec is None:
            config.rl_module(model_config={**(config._model_config or {}), **model_config})
        else:
            spec.model_config = {**(spec.model_config or {}), **model_config}
    return config


def validate_config(config) -> None:
    """Fails early, before Ray starts, on an unregistered env id or an unknown cell."""
    from memory_agents.rllib.config import check_env_id
    from memory_agents.rllib.module import RecurrentCellModule

    if isinstance(config.env, str):
        env = check_env_id(config.env)
        if env != config.env:
            config.environment(env)
    spec = config._rl_module_spec
    if spec is not None and isinstance(spec.module_class, type) and issubclass(
        spec.module_class, RecurrentCellModule
    ):
        from memory_agents.cells import available_cells

        cell = (spec.model_config or {}).get("cell", "ur-lstm")
        if cell not in available_cells():
            raise ValueError(
                f"Unknown cell {cell!r}; choose one of: {', '.join(available_cells())}"
            )


def init_ray(address: Optional[str] = None, num_cpus: Optional[int] = None) -> None:
    """Connects to a cluster (`address`) or starts a local Ray sized to this machine."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
        return
    # One torch/BLAS thread per process: with two threads on 2 cores a PPO iteration
    # went from 0.6 s to 30 s (threads fight the env loop).
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 2,
        include_dashboard=False,
        runtime_env={"env_vars": threads},
    )


def run_tune(
    config,
    *,
    stop: Optional[Dict[str, Any]] = None,
    storage_path: str = DEFAULT_STORAGE_PATH,
    experiment_name: Optional[str] = None,
    num_samples: int = 1,
    checkpoint_freq: int = 0,
    checkpoint_at_end: bool = True,
    ray_address: Optional[str] = None,
    param_space_overrides: Optional[Dict[str, Any]] = None,
    verbose: int = 1,
):
    """Trains `config` with `ray.tune.Tuner`; returns the `ResultGrid`.

    `param_space_overrides` are merged into the param space after `config.to_dict()`,
    e.g. ``{"seed": tune.grid_search([0, 1, 2])}`` for a grid.
    """
    import torch
    from ray import tune

    torch.set_num_threads(1)
    init_ray(ray_address)
    param_space = config.to_dict() if param_space_overrides else config
    if param_space_overrides:
        param_space.update(param_space_overrides)
    tuner = tune.Tuner(
        config.algo_class,
        param_space=param_space,
        tune_config=tune.TuneConfig(num_samples=num_samples),
        run_config=tune.RunConfig(
            name=experiment_name,
            storage_path=str(Path(os.path.expanduser(storage_path)).resolve()),
            stop=stop,
            verbose=verbose,
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=checkpoint_freq,
                checkpoint_at_end=checkpoint_at_end,
            ),
        ),
    )
    return tuner.fit()


def summarize(results) -> Tuple[List[str], int]:
    """Lines describing each trial's folder and last checkpoint, and the number of errors."""
    lines, errors = [], 0
    for result in results:
        if result.error is not None:
            errors += 1
            lines.append(f"trial {result.path}: ERROR {type(result.error).__name__}: {result.error}")
            continue
        checkpoint = result.checkpoint.path if result.checkpoint else "(none)"
        lines.append(f"trial {result.path}\n  checkpoint: {checkpoint}")
    return lines, errors
