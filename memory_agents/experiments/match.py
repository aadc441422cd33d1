"""Cell versus cell on Visual Match: success rate against env steps (the paper's RL figure).

    python -m memory_agents.experiments.match --cells lstm,ur-lstm --delays 15,30,60 \\
        --seeds 3 --timesteps 2000000

Every (cell, delay, seed) is one Ray Tune trial training PPO with `RecurrentCellModule`
(`memory_agents.rllib.memory_agent_config`), so the grid spreads over a Ray cluster
unchanged (`--ray-address auto --max-concurrent 0`). Each trial prints one line per
iteration (steps, training success, greedy evaluation success) while Tune shows its table.
At the end, in `--out-dir` (default: the experiment folder):

- ``match_curves.csv``: cell, delay, seed, env_steps, train_success, eval_success, ...
- ``match_success.png``: success rate vs env steps, one panel per delay, a line per cell
  (mean over seeds) with a band (min..max over seeds); top row training episodes, bottom
  row greedy evaluation
- ``match_table.md``: final success (mean ± std over seeds) and env steps to 90%, for both

Interrupted (Ctrl-C, a crash, the end of a session)? The same command with ``--resume``
continues the grid: finished trials are kept, the others continue from their last
checkpoint (every ``--checkpoint-freq`` iterations and every 5 minutes)::

    python -m memory_agents.experiments.match --cells lstm,ur-lstm --delays 30 --resume

A grid longer than a session, on a machine whose run folders do not outlive it: commit the
report's ``match_curves.csv`` (and the agents, `memory_agents.experiments.agents`) as trials
finish, and start the next session with ``--results`` pointing at it. The runs that reached
``--timesteps`` there are not run again, the unfinished ones start over, and the report
covers all of them::

    python -m memory_agents.experiments.match --cells ur-lstm,lstm --delays 30 --timesteps 2000000 \\
        --results docs/rl/my_grid/match_curves.csv --out-dir docs/rl/my_grid

A finished grid that needs more budget: ``--extend-from`` its experiment folder starts each
run from its last checkpoint (weights, optimizer, env-step and iteration counts) and trains on to
the new ``--timesteps``, so 2M steps become 3M without training the first 2M again. The agent
settings must be the grid's, and ``--seeds 1,2`` picks seeds (a count N means 0..N-1)::

    python -m memory_agents.experiments.match --cells ur-lstm,lstm --delays 90 --timesteps 3000000 \\
        --extend-from RUNS/d90 --experiment-name d90_3m --results docs/rl/d90/match_curves.csv

The agent options of DeepMind's TVT release (README, "Agent options"): the last action and
reward as core inputs, and the auxiliary reconstruction loss (1 = the release's weights)::

    python -m memory_agents.experiments.match --cells ur-lstm --delays 30 \\
        --prev-action-reward --reconstruction-weight 1

Re-plot a finished (or interrupted) experiment without training::

    python -m memory_agents.experiments.match --plot-only ~/ray_results/match
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from memory_agents.rllib import defaults

TASK_IDS = {
    "passive": "envs:memory_agents/PassiveVisualMatch-v0",
    "active": "envs:memory_agents/ActiveVisualMatch-v0",
}
CURVE_COLUMNS = [
    "cell", "delay", "seed", "iteration", "env_steps", "train_success",
    "train_last_phase_reward", "episode_return_mean", "eval_success", "eval_last_phase_reward",
    # Diagnostics of a run that does not learn: does the policy's entropy collapse, does the
    # value function predict the returns?
    "entropy", "vf_explained_var",
]
SUCCESS_TARGET = 0.9


@dataclass
class Args:
    cells: str = "lstm,ur-lstm"
    """comma-separated cell names (memory_agents.cells.available_cells())"""
    delays: str = "15,30,60"
    """comma-separated distractor_steps"""
    seeds: str = "3"
    """N: seeds 0..N-1 per (cell, delay); a comma-separated list (e.g. 1,2): those seeds"""
    timesteps: int = 2_000_000
    """env steps per trial"""
    task: str = "passive"
    """passive or active Visual Match"""
    hidden_size: int = defaults.HIDDEN_SIZE
    """recurrent hidden size"""
    num_envs: int = defaults.NUM_ENVS_PER_ENV_RUNNER
    """vectorised envs per trial"""
    lr: float = defaults.LR
    """Adam learning rate"""
    num_epochs: int = defaults.NUM_EPOCHS
    """PPO epochs over each batch"""
    train_batch_size: int = 0
    """env steps per training batch (0: 64 whole episodes)"""
    minibatch_size: int = 0
    """PPO minibatch in env steps (0: an eighth of the batch, 8 whole episodes)"""
    colour_order: str = defaults.COLOUR_ORDER
    """the reward room's colours: fixed (easier), instance (the release's rule) or episode"""
    entropy_coeff: float = defaults.ENTROPY_COEFF
    """PPO entropy bonus (the released A2C agent used 0.05)"""
    prev_action_reward: bool = defaults.PREV_ACTION_REWARD
    """the one-hot last action and the last reward are inputs of the core (the TVT release's agent)"""
    reconstruction_weight: float = defaults.RECONSTRUCTION_WEIGHT
    """auxiliary reconstruction loss (image, last action, last reward), in multiples of the
    release's weights (1: the release's; 0: off)"""
    model_config: str = ""
    """more model_config entries as JSON, the same for every cell, e.g. '{"head_hiddens": [256]}'"""
    results: str = ""
    """a match_curves.csv kept from earlier sessions (e.g. committed): its (cell, delay, seed)
    runs that reached --timesteps are not run again, and the report includes its rows"""
    eval_interval: int = defaults.MATCH_EVALUATION_INTERVAL
    """greedy evaluation every N training iterations"""
    eval_episodes: int = defaults.EVALUATION_EPISODES
    """episodes per evaluation"""
    storage_path: str = defaults.STORAGE_PATH
    """Tune storage folder"""
    experiment_name: str = "match"
    """experiment folder name under storage_path"""
    out_dir: str = ""
    """where CSV/PNG/table go (default: the experiment folder)"""
    max_concurrent: int = 1
    """trials at once (1 on a shared 2-core machine; 0 = as many as resources allow)"""
    ray_address: str = ""
    """existing Ray cluster (default: start Ray locally)"""
    plot_only: str = ""
    """experiment folder to re-plot without training"""
    resume: bool = False
    """continue the interrupted grid --experiment-name: finished trials are kept, unfinished
    ones continue from their last checkpoint"""
    extend_from: str = ""
    """a finished match experiment folder: each run starts from the last checkpoint of the same
    (cell, delay, seed) there, with its iteration and env-step counts, and trains on to
    --timesteps; the agent settings must be the same"""
    checkpoint_freq: int = defaults.CHECKPOINT_FREQ
    """checkpoint each trial every N iterations (and every 5 minutes)"""
    torch_threads: int = defaults.TORCH_THREADS
    """torch threads per trial"""


def field_docs(cls: type) -> Dict[str, str]:
    """The docstring under each field of a dataclass, read from its source: the one text of an
    option serves the code and ``--help``."""
    import ast
    import inspect

    body = ast.parse(inspect.getsource(cls)).body[0].body
    return {target.target.id: " ".join(doc.value.value.split())
            for target, doc in zip(body, body[1:])
            if isinstance(target, ast.AnnAssign) and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)}


def parse_args(argv: Optional[List[str]] = None) -> Args:
    parser = argparse.ArgumentParser(
        prog="python -m memory_agents.experiments.match", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    docs = field_docs(Args)
    for f in fields(Args):
        flag = "--" + f.name.replace("_", "-")
        text = docs[f.name].replace("%", "%%")
        if f.default != "" and "default" not in text:  # an empty default is said in the text
            text += " (default: %(default)s)"
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=docs[f.name])
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=text)
    return Args(**vars(parser.parse_args(argv)))


def _get(result: Dict[str, Any], *keys: str) -> float:
    for key in keys:
        if not isinstance(result, dict) or key not in result:
            return float("nan")
        result = result[key]
    return float(result)


#: Written into each trial checkpoint next to the Algorithm's own files.
PROGRESS_FILE = "match_progress.json"
RUN_KEYS = ("cell", "delay", "seed")
#: A trial's settings that shape the agent and its training, with the value a grid started
#: before the setting existed ran with: `--extend-from` requires them equal.
AGENT_SETTINGS = {
    "task": "passive", "hidden_size": None, "num_envs": None, "lr": None, "num_epochs": None,
    "train_batch_size": 0, "minibatch_size": 0, "colour_order": None, "entropy_coeff": None,
    "prev_action_reward": defaults.PREV_ACTION_REWARD, "reconstruction_weight": defaults.RECONSTRUCTION_WEIGHT,
    "model_config": "",
}


def trial_params(params: Dict[str, Any]) -> Dict[str, Any]:
    """A trial's parameters with its (cell, delay, seed) at the top level: grids list them
    under "run" (so that runs finished in earlier sessions can be left out); older grids
    searched each key on its own."""
    flat = {k: v for k, v in params.items() if k != "run"}
    flat.update(params.get("run") or {})
    return flat


def seed_list(text: str) -> List[int]:
    """`--seeds`: a count N means seeds 0..N-1; a comma-separated list names the seeds."""
    text = str(text)
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        values = []
    if "," not in text:  # a count
        values = list(range(values[0])) if values else []
    if not values or min(values) < 0 or len(set(values)) < len(values):
        raise ValueError(f"--seeds must be a count (3: seeds 0, 1, 2) or a comma-separated list of distinct "
                         f"seeds (1,2), got {text!r}")
    return values


def run_key(params: Dict[str, Any]) -> str:
    """A run's (cell, delay, seed) as one string: the key of `--extend-from`'s checkpoints."""
    return f"{params['cell']}:{int(params['delay'])}:{int(params['seed'])}"


def extension_checkpoints(folder: str, runs: List[Dict[str, Any]], args: "Args") -> Dict[str, str]:
    """`--extend-from`: the last checkpoint of each planned run in that finished experiment, by
    `run_key`. A ValueError names what is missing or differs, before Ray starts."""
    root = Path(os.path.expanduser(folder))
    if not root.is_dir():
        raise ValueError(f"--extend-from {folder!r} is not a folder")
    trials = {}
    for params_file in root.glob("*/params.json"):
        params = trial_params(json.loads(params_file.read_text()))
        trials[run_key(params)] = (params_file.parent, params)
    found = {}
    for run in runs:
        key = run_key(run)
        if key not in trials:
            raise ValueError(f"--extend-from {folder}: no trial of cell {run['cell']}, delay {run['delay']}, "
                             f"seed {run['seed']} there")
        trial, params = trials[key]
        differ = [f"{name} {params.get(name, default)!r} there, {getattr(args, name)!r} here"
                  for name, default in AGENT_SETTINGS.items()
                  if _setting(name, params.get(name, default)) != _setting(name, getattr(args, name))]
        if differ:
            raise ValueError(f"--extend-from {trial}: its agent settings differ ({'; '.join(differ)})")
        saved = [(json.loads(p.read_text())["env_steps"], p.parent) for p in trial.glob(f"checkpoint_*/{PROGRESS_FILE}")]
        if not saved:
            raise ValueError(f"--extend-from {trial}: no checkpoint to start from")
        steps, checkpoint = max(saved)
        if steps >= args.timesteps:
            raise ValueError(f"--extend-from {trial}: already at {steps:,} env steps; --timesteps "
                             f"({args.timesteps:,}) must be more")
        found[key] = str(checkpoint.resolve())
    return found


def _setting(name: str, value: Any) -> Any:
    # model_config is JSON text: compare what it means, not its spacing.
    return parse_model_config(value) if name == "model_config" else value


def finished_runs(results_csv: str, timesteps: int) -> set:
    """(cell, delay, seed) of the runs in `results_csv` that reached `timesteps` env steps."""
    import pandas as pd

    path = Path(os.path.expanduser(results_csv))
    if not path.is_file():
        raise ValueError(f"--results {results_csv!r} does not exist")
    df = pd.read_csv(path)
    missing = [c for c in (*RUN_KEYS, "env_steps") if c not in df.columns]
    if missing:
        raise ValueError(f"--results {results_csv!r} is not a match_curves.csv (no {', '.join(missing)})")
    done = df.groupby(list(RUN_KEYS))["env_steps"].max()
    return {(str(c), int(d), int(s)) for (c, d, s), steps in done.items() if steps >= timesteps}


def train_trial(params: Dict[str, Any]) -> None:
    """Tune function trainable: PPO on one (cell, delay, seed) for `timesteps` env steps.

    Checkpoints every `checkpoint_freq` iterations, every `CHECKPOINT_EVERY_S` seconds and
    at the end; a restored trial (`--resume`) continues from its last checkpoint.
    """
    import torch
    from ray import tune

    from memory_agents.rllib import memory_agent_config

    params = trial_params(params)
    torch.set_num_threads(params.get("torch_threads", 1))
    config = memory_agent_config(
        TASK_IDS[params["task"]],
        cell=params["cell"],
        hidden_size=params["hidden_size"],
        env_config={"distractor_steps": params["delay"], "colour_order": params["colour_order"]},
        seed=params["seed"],
        num_envs_per_env_runner=params["num_envs"],
        lr=params["lr"],
        num_epochs=params["num_epochs"],
        train_batch_size=params.get("train_batch_size") or None,
        minibatch_size=params["minibatch_size"] or None,
        entropy_coeff=params["entropy_coeff"],
        evaluation_interval=params["eval_interval"],
        evaluation_episodes=params["eval_episodes"],
        # .get: grids started before these options have no such keys.
        prev_action_reward=params.get("prev_action_reward", defaults.PREV_ACTION_REWARD),
        reconstruction_weight=params.get("reconstruction_weight", defaults.RECONSTRUCTION_WEIGHT),
        model_config=parse_model_config(params.get("model_config", "")),
    )
    algo = config.build_algo()
    tag = f"[{params['cell']} delay={params['delay']} seed={params['seed']}]"
    steps, iteration = 0, 0
    restored = tune.get_checkpoint()
    source = (params.get("extend_from") or {}).get(run_key(params))
    if restored is not None:
        with restored.as_directory() as folder:
            steps, iteration = _restore(algo, folder)
        print(f"{tag} resumed at iteration {iteration}, {steps} env steps", flush=True)
    elif source:  # the first start of an --extend-from run
        steps, iteration = _restore(algo, source)
        print(f"{tag} extends {source} from iteration {iteration}, {steps} env steps", flush=True)
    start, start_steps, last_save = time.time(), steps, time.monotonic()
    while steps < params["timesteps"]:
        result = algo.train()
        iteration += 1
        steps = int(_get(result, "env_runners", "num_env_steps_sampled_lifetime"))
        metrics = {
            # Tune's training_iteration starts at 1 in an --extend-from trial; this goes on.
            "match_iteration": iteration,
            "env_steps": steps,
            "train_success": _get(result, "env_runners", "success"),
            "train_last_phase_reward": _get(result, "env_runners", "last_phase_reward"),
            "episode_return_mean": _get(result, "env_runners", "episode_return_mean"),
            "eval_success": _get(result, "evaluation", "env_runners", "success"),
            "eval_last_phase_reward": _get(result, "evaluation", "env_runners", "last_phase_reward"),
            "entropy": _get(result, "learners", "default_policy", "entropy"),
            "vf_explained_var": _get(result, "learners", "default_policy", "vf_explained_var"),
        }
        print(
            f"{tag} it {iteration} steps {steps} train_success {metrics['train_success']:.2f} "
            f"eval_success {metrics['eval_success']:.2f} "
            f"({(steps - start_steps) / (time.time() - start):.0f} steps/s)",
            flush=True,
        )
        due = (iteration % max(params.get("checkpoint_freq", 0), 1) == 0 and params.get("checkpoint_freq", 0)) \
            or time.monotonic() - last_save >= defaults.CHECKPOINT_EVERY_S
        if due or steps >= params["timesteps"]:
            with tempfile.TemporaryDirectory() as tmp:
                algo.save_to_path(tmp)
                (Path(tmp) / PROGRESS_FILE).write_text(json.dumps({"env_steps": steps, "iteration": iteration}))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
            last_save = time.monotonic()
        else:
            tune.report(metrics)
    algo.stop()


def _restore(algo, folder) -> tuple:
    """Loads a trial checkpoint into `algo`; returns its (env steps, iteration)."""
    algo.restore_from_path(str(folder))
    progress = json.loads((Path(folder) / PROGRESS_FILE).read_text())
    return progress["env_steps"], progress["iteration"]


def parse_model_config(text: str) -> Dict[str, Any]:
    """`--model-config` as a dict; a ValueError that names the flag."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--model-config is not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--model-config must be a JSON object, got {text!r}")
    for key in ("cell", "hidden_size"):
        if key in value:
            raise ValueError(f"--model-config must not set {key!r}: use --cells / --hidden-size")
    return value


def run_grid(args: Args) -> Optional[Path]:
    """Runs (or, with `args.resume`, continues) the (cell, delay, seed) grid through Tune;
    returns the experiment folder (None: `args.results` holds every run already)."""
    from ray import tune
    from ray.rllib.algorithms.ppo import PPO

    from memory_agents.cells.config import check_cell_name
    from memory_agents.ray_init import init_ray
    from memory_agents.rllib import memory_agent_config

    storage = Path(os.path.expanduser(args.storage_path)).resolve()
    experiment = storage / args.experiment_name
    exists = (experiment / "tuner.pkl").is_file()
    if args.resume and not exists:
        raise ValueError(f"nothing to resume: {experiment} holds no grid (run without --resume to start it)")
    if exists and not args.resume:
        raise ValueError(f"{experiment} already holds a grid: add --resume to continue it, or "
                         f"choose another --experiment-name")
    cells = [check_cell_name(c.strip()) for c in args.cells.split(",") if c.strip()]
    delays = [int(d) for d in args.delays.split(",")]
    # Resources of one trial = those of one PPO algorithm with these settings; building it
    # also checks the agent options before Ray starts.
    probe = memory_agent_config(
        TASK_IDS[args.task], cell=cells[0], env_config={"distractor_steps": delays[0]},
        num_envs_per_env_runner=args.num_envs, prev_action_reward=args.prev_action_reward,
        reconstruction_weight=args.reconstruction_weight,
        model_config=parse_model_config(args.model_config),
    )
    trainable = tune.with_resources(train_trial, PPO.default_resource_request(probe))
    runs = [{"seed": seed, "delay": delay, "cell": cell}
            # Seeds vary slowest, so the first finished trials already compare every cell.
            for seed in seed_list(args.seeds) for delay in delays for cell in cells]
    if args.results and not args.resume:
        done = finished_runs(args.results, args.timesteps)
        runs = [r for r in runs if (r["cell"], r["delay"], r["seed"]) not in done]
        print(f"match: {len(done)} run(s) finished in {args.results}; {len(runs)} to run", flush=True)
        if not runs:
            return None
    extend_from = extension_checkpoints(args.extend_from, runs, args) if args.extend_from and not args.resume else {}
    init_ray(args.ray_address or None, torch_threads=args.torch_threads)
    if args.resume:
        # Finished trials stay as they are; unfinished and failed ones continue from their
        # last checkpoint (or start over if they never saved one).
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable,
                                   resume_unfinished=True, resume_errored=True)
        tuner.fit()
        return experiment
    param_space = {
        "run": tune.grid_search(runs),
        **{k: getattr(args, k) for k in (
            *AGENT_SETTINGS, "timesteps", "eval_interval", "eval_episodes", "checkpoint_freq", "torch_threads")},
        **({"extend_from": extend_from} if extend_from else {}),
    }
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=args.max_concurrent or None),
        run_config=tune.RunConfig(
            name=args.experiment_name, storage_path=str(storage),
            # num_to_keep also makes Tune save the grid's state at every checkpoint.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=defaults.KEEP_CHECKPOINTS),
        ),
    )
    tuner.fit()
    return experiment


def _iteration(result: Dict[str, Any]) -> int:
    # Trials before match_iteration existed count with Tune's own counter.
    return result.get("match_iteration", result.get("training_iteration"))


def collect_curves(experiment_dir: Path):
    """One row per (trial, iteration) from each trial's params.json and result.json."""
    import pandas as pd

    rows = []
    for params_file in sorted(Path(experiment_dir).glob("*/params.json")):
        params = trial_params(json.loads(params_file.read_text()))
        result_file = params_file.with_name("result.json")
        if not result_file.is_file():
            continue
        results = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        source = (params.get("extend_from") or {}).get(run_key(params))
        if source and results:
            # An --extend-from run continues the iterations of the trial it started from: its
            # curve begins with that trial's, where that folder is still here.
            start = json.loads((Path(source) / PROGRESS_FILE).read_text())["iteration"]
            before = Path(source).parent / "result.json"
            if before.is_file():
                results = [r for r in (json.loads(line) for line in before.read_text().splitlines() if line.strip())
                           if _iteration(r) <= start] + results
        for result in results:
            rows.append({
                "cell": params["cell"], "delay": params["delay"], "seed": params["seed"],
                "iteration": _iteration(result),
                **{k: result.get(k, np.nan) for k in CURVE_COLUMNS[4:]},
            })
    if not rows:
        raise FileNotFoundError(f"No trial results under {experiment_dir}")
    # A resumed trial repeats the iterations after its last checkpoint: keep the rerun.
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).drop_duplicates(
        ["cell", "delay", "seed", "iteration"], keep="last"
    ).sort_values(["cell", "delay", "seed", "env_steps"])


def _seed_curves(df, metric: str, grid: np.ndarray) -> np.ndarray:
    """(seeds, len(grid)) of `metric` interpolated on a common env-step grid (NaN past end)."""
    curves = []
    for _, run in df.groupby("seed"):
        run = run.dropna(subset=[metric])
        if run.empty:
            continue
        x, y = run["env_steps"].to_numpy(float), run[metric].to_numpy(float)
        curve = np.interp(grid, x, y, left=np.nan, right=np.nan)
        curves.append(curve)
    return np.array(curves)


METRIC_TITLES = {
    "train_success": "training episodes (sampled actions, last 100)",
    "eval_success": "greedy evaluation",
    "entropy": "policy entropy (nats; uniform over 4 actions: 1.39)",
}


def plot_curves(df, path: Path, metrics: List[str]) -> None:
    """A row of panels (one per delay) per metric; mean over seeds with a min..max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    delays = sorted(df["delay"].unique())
    fig, axes = plt.subplots(
        len(metrics), len(delays), figsize=(4.5 * len(delays), 3.4 * len(metrics)), squeeze=False
    )
    for row, metric in zip(axes, metrics):
        for ax, delay in zip(row, delays):
            part = df[df["delay"] == delay]
            grid = np.linspace(part["env_steps"].min(), part["env_steps"].max(), 100)
            for cell, runs in part.groupby("cell"):
                curves = _seed_curves(runs, metric, grid)
                if curves.size == 0:
                    continue
                with warnings.catch_warnings():  # all-NaN columns past a seed's last step
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean, low, high = (f(curves, 0) for f in (np.nanmean, np.nanmin, np.nanmax))
                line = ax.plot(grid / 1e6, mean, label=f"{cell} ({len(curves)} seed{'s' if len(curves) != 1 else ''})")[0]
                ax.fill_between(grid / 1e6, low, high, color=line.get_color(), alpha=0.2)
            if metric == "entropy":
                ax.set(ylim=(0, 1.45))
            else:
                ax.axhline(1 / 3, color="grey", ls=":", lw=1, label="chance (1/3)")
                ax.set(ylim=(-0.02, 1.02))
            ax.set(title=f"delay {delay}: {METRIC_TITLES.get(metric, metric)}",
                   xlabel="env steps (millions)")
            ax.title.set_fontsize(9)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("entropy" if metric == "entropy" else "success rate")
    axes[0][-1].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: "Final" success = mean of a run's last reports (3 evaluations = 96 greedy episodes), so
#: one lucky or unlucky evaluation of 32 episodes does not decide the table.
FINAL_REPORTS = 3


def results_table(df, metric: str) -> str:
    """Markdown: final success (mean ± std over seeds) and env steps to reach 90%."""
    lines = [
        f"| cell | delay | seeds | env steps | final {metric}, mean of last {FINAL_REPORTS} reports "
        f"(mean ± std over seeds) | steps to {SUCCESS_TARGET:.0%} (seeds reaching) |",
        "|---|---|---|---|---|---|",
    ]
    for (cell, delay), runs in df.groupby(["cell", "delay"]):
        finals, reach = [], []
        for _, run in runs.groupby("seed"):
            run = run.dropna(subset=[metric])
            if run.empty:
                continue
            finals.append(run[metric].iloc[-FINAL_REPORTS:].mean())
            hit = run[run[metric] >= SUCCESS_TARGET]
            if not hit.empty:
                reach.append(hit["env_steps"].iloc[0])
        steps = int(runs["env_steps"].max())
        reach_text = f"{np.mean(reach):,.0f} ({len(reach)}/{len(finals)})" if reach else f"— (0/{len(finals)})"
        lines.append(
            f"| {cell} | {delay} | {len(finals)} | {steps:,} | "
            f"{np.mean(finals):.2f} ± {np.std(finals):.2f} | {reach_text} |"
        )
    return "\n".join(lines)


def _keep_dropped_runs(csv_path: Path, df) -> Optional[Path]:
    """Before `df` replaces the match_curves.csv at `csv_path`: if that file holds runs that
    `df` lacks (a run written there by another grid since, or a report made without
    --results), move it aside to match_curves.<UTC time>.csv and say so, so that no finished
    run's curve is lost silently. Returns the new path of the old file, or None."""
    import pandas as pd

    if not csv_path.exists():
        return None
    try:
        old = pd.read_csv(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        old = None
    if old is not None and not set(RUN_KEYS) <= set(old.columns):
        old = None  # not a match_curves.csv: nothing of ours to keep, but do not clobber it
    if old is not None:
        keys = lambda frame: set(map(tuple, frame[list(RUN_KEYS)].drop_duplicates().itertuples(index=False)))
        dropped = keys(old) - keys(df)
        if not dropped:
            return None
        what = ", ".join(f"{c} delay {d} seed {s}" for c, d, s in sorted(dropped))
    else:
        what = "a file that is not a match curves CSV"
    moved = csv_path.with_name(f"match_curves.{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.csv")
    csv_path.rename(moved)
    print(f"match: {csv_path} held runs this report does not ({what}); kept as {moved}. "
          f"Merge them with: --plot-only EXPERIMENT --results {moved}", file=sys.stderr, flush=True)
    return moved


def write_report(experiment_dir: Optional[Path], out_dir: Path, results: str = "") -> Dict[str, Path]:
    """CSV, figure and table of the experiment's trials and, with `results`, of the runs kept
    in that match_curves.csv (a run in both comes from the experiment)."""
    import pandas as pd

    frames = []
    if experiment_dir is not None and Path(experiment_dir).is_dir():
        try:
            frames.append(collect_curves(experiment_dir))
        except FileNotFoundError:
            if not results:
                raise
    if results:
        kept = pd.read_csv(Path(os.path.expanduser(results)))
        if frames:
            # A run in both comes from the experiment; the kept rows before its first iteration
            # stay (they are the start of an --extend-from run, none for a run started over).
            first = frames[0].groupby(list(RUN_KEYS))["iteration"].min().rename("first").reset_index()
            kept = kept.merge(first, on=list(RUN_KEYS), how="left")
            kept = kept[kept["first"].isna() | (kept["iteration"] < kept["first"])].drop(columns="first")
        frames.insert(0, kept.reindex(columns=CURVE_COLUMNS))
    df = pd.concat(frames, ignore_index=True).sort_values(["cell", "delay", "seed", "env_steps"])
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = ["train_success"] + (["eval_success"] if df["eval_success"].notna().any() else [])
    curve_metrics = metrics + (["entropy"] if df["entropy"].notna().any() else [])
    paths = {
        "csv": out_dir / "match_curves.csv",
        "png": out_dir / "match_success.png",
        "table": out_dir / "match_table.md",
    }
    _keep_dropped_runs(paths["csv"], df)
    df.to_csv(paths["csv"], index=False)
    plot_curves(df, paths["png"], curve_metrics)
    paths["table"].write_text("\n\n".join(results_table(df, m) for m in metrics) + "\n")
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.plot_only:
            experiment_dir = Path(os.path.expanduser(args.plot_only))
        else:
            experiment_dir = run_grid(args)
    except ValueError as err:  # a bad cell name or --model-config, nothing to resume, ...
        print(f"match: error: {err}", file=sys.stderr)
        return 2
    if experiment_dir is None:  # every run was finished already
        experiment_dir = Path(os.path.expanduser(args.storage_path)) / args.experiment_name
    out_dir = Path(os.path.expanduser(args.out_dir)) if args.out_dir else experiment_dir
    paths = write_report(experiment_dir, out_dir, args.results)
    print(paths["table"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
