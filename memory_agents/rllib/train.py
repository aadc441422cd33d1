"""Run RLlib training through `ray.tune.Tuner` (what `rllib train` does).

Tune writes, under ``<storage_path>/<experiment_name>/<trial>/``: ``progress.csv``,
``result.json``, TensorBoard ``events.out.tfevents.*`` and ``checkpoint_*/`` folders
(each an RLlib Algorithm checkpoint; its RLModule lies in
``learner_group/learner/rl_module/default_policy``).
"""

from __future__ import annotations

import functools
import json
import os
import runpy
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from memory_agents.rllib import defaults


class ConfigFileError(ValueError):
    """A config file that cannot be found, raises, or defines no AlgorithmConfig."""


def shipped_configs() -> Dict[str, Path]:
    """The config files installed with the package (the `configs` folder), by name."""
    try:
        import configs
    except ImportError:
        return {}
    folder = Path(configs.__file__).parent
    return {p.stem: p for p in sorted(folder.glob("*.py"))
            if not p.name.startswith("_") and p.stem != "visual_match_common"}


def find_config_file(name: str) -> Path:
    """A path to a config file, or the bare name of a shipped one (``ppo_passive_match_ur_lstm``)."""
    path = Path(os.path.expanduser(name))
    if path.is_file():
        return path
    shipped = shipped_configs()
    stem = path.name[:-3] if path.name.endswith(".py") else path.name
    if path.parent == Path(".") or str(path.parent) == "configs":
        if stem in shipped:
            return shipped[stem]
    import difflib

    close = difflib.get_close_matches(stem, list(shipped), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ConfigFileError(f"config file {name!r} not found (not a file, nor a shipped config{hint}); "
                          f"shipped configs: {', '.join(shipped) or '(none installed)'}")


def load_config_file(name: str) -> Tuple[Any, Optional[Dict[str, Any]], Path]:
    """Runs a Python config file; returns its `config` (an AlgorithmConfig), `stop` and path.

    Any error while the file runs (a bad environment variable, a typo in a setting) becomes
    one ConfigFileError line naming the file, not a traceback.
    """
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    path = find_config_file(name)
    try:
        namespace = runpy.run_path(str(path), run_name="__rllib_config__")
    except Exception as err:  # the file is user code: report any failure in one line
        raise ConfigFileError(f"{path}: {type(err).__name__}: {err}") from None
    config = namespace.get("config")
    if not isinstance(config, AlgorithmConfig):
        got = "no variable `config`" if config is None else f"`config` is a {type(config).__name__}"
        raise ConfigFileError(f"{path} must define `config`, an RLlib AlgorithmConfig ({got})")
    stop = namespace.get("stop")
    if stop is not None and not isinstance(stop, dict):
        raise ConfigFileError(f"{path}: `stop` must be a dict of Tune stop criteria, got {stop!r}")
    return config, stop, path


def _setting_names(config) -> List[str]:
    """The top-level keys `--config` accepts: the AlgorithmConfig's settings, and its
    settable properties (``train_batch_size_per_learner``)."""
    names = {k for k in config.to_dict() if not k.startswith("_")}
    names |= {n for n in dir(type(config)) if not n.startswith("_")
              and isinstance(getattr(type(config), n, None), property) and getattr(type(config), n).fset}
    return sorted(names)


def apply_overrides(config, overrides: Optional[Dict[str, Any]]):
    """Applies a ``--config`` JSON dict to an AlgorithmConfig; unknown keys are an error.

    Keys are AlgorithmConfig settings (``lr``, ``num_env_runners``, ``env_config``, ...);
    ``model_config`` is merged into the RLModule spec's model_config, e.g.
    ``{"model_config": {"cell": "gru", "hidden_size": 128}}``, and ``env_config`` into the
    config's env_config.
    """
    from memory_agents.rllib.module import unknown_key_error

    overrides = dict(overrides or {})
    model_config = overrides.pop("model_config", None)
    valid = _setting_names(config)
    for key in overrides:
        translated = config._translate_special_keys(key, warn_deprecated=False)
        if key not in valid and translated not in valid:
            raise unknown_key_error("--config", key, valid, list_valid=False)
    if isinstance(overrides.get("env_config"), dict):
        overrides["env_config"] = {**(config.env_config or {}), **overrides["env_config"]}
    if overrides:
        config.update_from_dict(overrides)
    if model_config is not None:
        if not isinstance(model_config, dict):
            raise ValueError(f"--config model_config must be a JSON object, got {model_config!r}")
        spec = config._rl_module_spec
        if spec is None:
            config.rl_module(model_config={**(config._model_config or {}), **model_config})
        else:
            spec.model_config = {**(spec.model_config or {}), **model_config}
    return config


def validate_config(config) -> None:
    """Fails early, before Ray starts: an unregistered env id, a bad env_config key or
    value, a bad model_config key or value (our module), settings RLlib rejects. Sets the
    connector and learner class that the module's agent options need (`--config` may have
    changed them since the config was built: `apply_model_options`)."""
    from memory_agents.rllib.config import apply_model_options, check_env_id, make_env
    from memory_agents.rllib.module import RecurrentCellModule, check_model_config

    if isinstance(config.env, str):
        env = check_env_id(config.env)
        if env != config.env:
            config.environment(env)
        make_env(env, config.env_config).close()
    spec = config._rl_module_spec
    if spec is not None and isinstance(spec.module_class, type) and issubclass(
        spec.module_class, RecurrentCellModule
    ):
        spec.model_config = {**(spec.model_config or {}),
                             "conv_filters": check_model_config(spec.model_config)["conv_filters"]}
        apply_model_options(config)
    try:
        config.validate()
    except Exception as err:  # RLlib raises ValueError and its own error types
        raise ValueError(f"RLlib rejects the config: {err}") from None


def config_label(config) -> str:
    """What the progress line and the trial folders name: the cell of our module, if any."""
    spec = config._rl_module_spec
    cell = (getattr(spec, "model_config", None) or {}).get("cell") if spec is not None else None
    return str(cell) if cell else ""


def _trial_dirname(trial, prefix: str) -> str:
    # The cell shows in the folder name, so a MEMORY_AGENTS_CELL override is visible.
    return f"{prefix}_{trial.trial_id}"


def _experiment_folders(storage: Path, prefix: str) -> List[Path]:
    """Experiments under `storage` whose name is `prefix` or `prefix_<time>`, oldest first."""
    if not storage.is_dir():
        return []
    found = [p for p in storage.iterdir()
             if p.is_dir() and (p.name == prefix or p.name.startswith(prefix + "_"))
             and (p / "tuner.pkl").is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def resolve_experiment(storage_path: str, experiment_name: Optional[str], prefix: str,
                       resume: bool) -> Tuple[Path, str]:
    """(storage folder, experiment name) for a new run or, with `resume`, the run to continue:
    `experiment_name` if given, else the newest ``<prefix>_<time>`` folder under the storage."""
    storage = Path(os.path.expanduser(storage_path)).resolve()
    if resume:
        if experiment_name:
            if not (storage / experiment_name / "tuner.pkl").is_file():
                raise ValueError(f"nothing to resume: {storage / experiment_name} holds no experiment "
                                 f"(run the same command without --resume to start one)")
            return storage, experiment_name
        found = _experiment_folders(storage, prefix)
        if not found:
            raise ValueError(f"nothing to resume: no experiment named {prefix}_* under {storage} "
                             f"(run the same command without --resume to start one, or pass "
                             f"--experiment-name/--storage-path)")
        return storage, found[-1].name
    name = experiment_name or f"{prefix}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    if (storage / name / "tuner.pkl").is_file():
        raise ValueError(f"{storage / name} already holds an experiment: add --resume to continue "
                         f"it, or choose another --experiment-name")
    return storage, name


RUN_FILE = "memory_agents_run.json"


def run_tune(
    config,
    *,
    stop: Optional[Dict[str, Any]] = None,
    storage_path: str = defaults.STORAGE_PATH,
    experiment_name: Optional[str] = None,
    name_prefix: Optional[str] = None,
    num_samples: int = 1,
    checkpoint_freq: int = defaults.CHECKPOINT_FREQ,
    checkpoint_every_s: float = defaults.CHECKPOINT_EVERY_S,
    keep_checkpoints: int = defaults.KEEP_CHECKPOINTS,
    checkpoint_at_end: bool = True,
    ray_address: Optional[str] = None,
    resume: bool = False,
    torch_threads: int = defaults.TORCH_THREADS,
    param_space_overrides: Optional[Dict[str, Any]] = None,
    label: str = "",
    verbose: int = 1,
):
    """Trains `config` with `ray.tune.Tuner` (or continues it, `resume`); returns the ResultGrid.

    Checkpoints every `checkpoint_freq` iterations and at least every `checkpoint_every_s`
    seconds, keeping the last `keep_checkpoints`; the first Ctrl-C/SIGTERM stops each trial
    after its current iteration with a checkpoint. `resume` continues the newest experiment
    ``<name_prefix>_<time>`` (or `experiment_name`) from its trials' last checkpoints to the
    same stop, keeping its earlier results. `verbose`: 0 quiet, 1 one progress line per
    iteration, 2 also Tune's tables and Ray's logs.
    `param_space_overrides` are merged into the param space after `config.to_dict()`,
    e.g. ``{"seed": tune.grid_search([0, 1, 2])}`` for a grid.
    """
    from ray import tune

    from memory_agents.ray_init import init_ray
    from memory_agents.rllib.progress import ProgressCallback, RunStopper, stop_on_signals

    algo = config.algo_class.__name__
    prefix = name_prefix or algo
    storage, name = resolve_experiment(storage_path, experiment_name, prefix, resume)
    run_file = storage / name / RUN_FILE
    identity = {"algo": algo, "env": str(config.env), "label": label}
    if resume and run_file.is_file():
        saved = json.loads(run_file.read_text())
        different = {k: (saved.get(k), v) for k, v in identity.items() if saved.get(k) not in (None, v)}
        if different:
            what = ", ".join(f"{k} {a!r} there, {b!r} here" for k, (a, b) in different.items())
            raise ValueError(f"{storage / name} was trained with other settings ({what}); "
                             f"pass --experiment-name to pick the experiment to resume")
        stop = saved.get("stop", stop)
    if verbose >= 1:
        verb = "resuming" if resume else "starting"
        print(f"{verb} {storage / name}", flush=True)
    # Tune's logs (progress.csv, result.json, TensorBoard) are written to a staging copy and
    # uploaded with the experiment state; by default that can lag minutes behind. Every 10 s
    # keeps the results folder current and loses at most 10 s of rows to a kill -9.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "10")
    init_ray(ray_address, torch_threads=torch_threads, quiet=verbose < 2)
    if verbose < 2:
        config.debugging(log_level="ERROR")  # RLlib sets its logger's level from this
    progress = ProgressCallback(stop=stop, checkpoint_every_s=checkpoint_every_s, label=label,
                                quiet=verbose < 1)
    with stop_on_signals():
        if resume:
            tuner = tune.Tuner.restore(str(storage / name), trainable=config.algo_class,
                                       resume_unfinished=True, resume_errored=True)
        else:
            param_space = config.to_dict() if param_space_overrides else config
            if param_space_overrides:
                param_space.update(param_space_overrides)
            trial_prefix = f"{algo}_{label}".rstrip("_").replace(" ", "_")
            tuner = tune.Tuner(
                config.algo_class,
                param_space=param_space,
                tune_config=tune.TuneConfig(
                    num_samples=num_samples,
                    trial_name_creator=functools.partial(_trial_dirname, prefix=trial_prefix),
                    trial_dirname_creator=functools.partial(_trial_dirname, prefix=trial_prefix),
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=str(storage),
                    stop=RunStopper(stop),
                    verbose=2 if verbose >= 2 else 0,
                    callbacks=[progress],
                    checkpoint_config=tune.CheckpointConfig(
                        checkpoint_frequency=checkpoint_freq,
                        checkpoint_at_end=checkpoint_at_end,
                        # Also makes Tune save the experiment state at every checkpoint,
                        # so a kill -9 resumes from the newest one.
                        num_to_keep=keep_checkpoints,
                    ),
                ),
            )
            run_file.parent.mkdir(parents=True, exist_ok=True)
            run_file.write_text(json.dumps({**identity, "stop": stop, "argv": sys.argv,
                                            "started": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
        session_start = time.time()
        results = tuner.fit()
    if resume and verbose >= 1 and not _trained_any(results, session_start):
        print("nothing left to train: every trial had already reached its stop", flush=True)
    return results


def _trained_any(results, session_start: float) -> bool:
    # A trial that trained in this session has a result newer than the session's start.
    return any(r.metrics and r.metrics.get("timestamp", 0) >= int(session_start) for r in results)


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
