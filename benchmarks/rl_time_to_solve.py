"""Wall time to solve Passive Visual Match with the shipped fixed-order config: issue 12's number.

    OMP_NUM_THREADS=1 python benchmarks/rl_time_to_solve.py            # seeds 0,1,2, one at a time
    OMP_NUM_THREADS=1 python benchmarks/rl_time_to_solve.py --seeds 1  # one more seed; kept ones stay

Trains `configs/ppo_passive_match_fixed_ur_lstm.py` as shipped: the reward room's colours in
a fixed order (the task of the "before" figures; delay 30, ur-lstm, entropy bonus 0.03) for each seed, one run at a time, and stops a run at its first greedy
evaluation (32 episodes) with success >= 90%, or at ``--max-timesteps``. Evaluation runs every
5 iterations (the shipped config: 10), the resolution of the match experiment that measured
the earlier steps-to-90% (403k, 691k, 634k). Wall time counts from building the algorithm
(env runners, learner) to the end of that evaluation; it includes the evaluations.

Run it on a quiet machine: the minutes are the target figure. Results go to ``--out-dir``
after every seed (a finished seed is skipped when the command runs again):
``rl_time_to_solve.json`` (per seed: steps and minutes to 90%, steps/s, every evaluation),
``rl_time_to_solve.md`` (the README table) and ``rl_time_to_solve.png`` (success vs minutes
and vs env steps).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

_HERE = Path(__file__).resolve().parent
# benchmarks/envs.py would shadow the `envs` package that registers the ids.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

CONFIG = "ppo_passive_match_fixed_ur_lstm"
#: Before issue 12 (README, "Learning results": match experiment, greedy evaluation every 5
#: iterations), at the ~1,000 env steps/s that config trained at on this machine.
BEFORE = {0: 403_200, 1: 691_200, 2: 633_600}
BEFORE_STEPS_PER_S = 1_000


@dataclass
class Args:
    seeds: str = "0,1,2"
    """comma-separated seeds, run one after another"""
    target: float = 0.9
    """greedy success that counts as solved"""
    eval_interval: int = 5
    """greedy evaluation every N iterations"""
    max_timesteps: int = 2_000_000
    """give up on a seed after this many env steps"""
    config: str = ""
    """JSON of settings applied to the shipped config, as `rllib train --config` takes them
    (e.g. '{"model_config": {"embed_dim": 256}}'); empty: the config as shipped"""
    out_dir: str = str(_HERE / "results")
    """where the JSON/markdown/PNG go"""


def load_results(path: Path) -> Dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"seeds": {}}


def first_reach(evaluations: List[Dict[str, float]], target: float) -> Optional[Dict[str, float]]:
    """The first evaluation with success >= target, or None."""
    return next((e for e in evaluations if e["success"] >= target), None)


def train_seed(seed: int, args: Args) -> Dict[str, Any]:
    """Trains the shipped config with `seed` until the target or the step budget."""
    from memory_agents.rllib.progress import evaluation_success
    from memory_agents.rllib.train import apply_overrides, load_config_file

    os.environ["MEMORY_AGENTS_SEED"] = str(seed)
    os.environ["MEMORY_AGENTS_EVAL_INTERVAL"] = str(args.eval_interval)
    # The task: the fixed colour order, which the "before" figures were measured on (the
    # config's own default; pinned against a MEMORY_AGENTS_COLOUR_ORDER left in the shell).
    os.environ["MEMORY_AGENTS_COLOUR_ORDER"] = "fixed"
    config, _, path = load_config_file(CONFIG)
    if args.config:
        apply_overrides(config, json.loads(args.config))
    start = time.perf_counter()
    algo = config.build_algo()
    build_s = time.perf_counter() - start
    evaluations: List[Dict[str, float]] = []
    steps, iteration = 0, 0
    try:
        while steps < args.max_timesteps:
            result = algo.train()
            iteration += 1
            steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
            success = evaluation_success(result, iteration, args.eval_interval)
            if math.isnan(success):
                continue
            elapsed = time.perf_counter() - start
            evaluations.append({"iteration": iteration, "env_steps": steps,
                                "seconds": round(elapsed, 1), "success": float(success)})
            print(f"seed {seed} it {iteration} steps {steps:,} eval {success:.2f} "
                  f"{elapsed / 60:.1f} min ({steps / elapsed:.0f} steps/s)", flush=True)
            if success >= args.target:
                break
    finally:
        algo.stop()
    hit = first_reach(evaluations, args.target)
    return {
        "seed": seed, "config": str(path), "overrides": args.config or None,
        # What the run trained with (the defaults change; the knobs override them).
        "settings": {"algo": config.algo_class.__name__, "num_env_runners": config.num_env_runners,
                     "num_envs_per_env_runner": config.num_envs_per_env_runner,
                     "num_learners": config.num_learners, "train_batch_size": config.total_train_batch_size,
                     "minibatch_size": config.minibatch_size, "num_epochs": config.num_epochs},
        "build_seconds": round(build_s, 1),
        "steps_to_target": hit["env_steps"] if hit else None,
        "minutes_to_target": round(hit["seconds"] / 60, 2) if hit else None,
        "env_steps_per_s": round(steps / evaluations[-1]["seconds"]) if evaluations else None,
        "evaluations": evaluations,
        "load_average_1m_5m_15m_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def table(results: Dict[str, Any], target: float) -> str:
    """Markdown: per seed, steps and minutes to the target, before and now; then medians."""
    pct = f"{target:.0%}"
    lines = [f"| seed | steps to {pct}, before | minutes, before (~{BEFORE_STEPS_PER_S:,} steps/s) "
             f"| steps to {pct}, now | minutes, now | steps/s, now |", "|---:|---:|---:|---:|---:|---:|"]
    now_minutes, before_minutes = [], []
    for key in sorted(results["seeds"], key=int):
        row = results["seeds"][key]
        before = BEFORE.get(int(key))
        before_min = before / BEFORE_STEPS_PER_S / 60 if before else None
        if before_min is not None:
            before_minutes.append(before_min)
        # A seed that never reached the target counts as slower than any that did.
        now_minutes.append(row["minutes_to_target"] if row["minutes_to_target"] is not None else math.inf)
        steps, minutes = row["steps_to_target"], row["minutes_to_target"]
        lines.append(" | ".join([
            f"| {key}", f"{before:,}" if before else "—", f"{before_min:.1f}" if before_min else "—",
            f"{steps:,}" if steps else "not reached", f"{minutes:.1f}" if minutes is not None else "—",
            f"{row['env_steps_per_s']:,} |" if row["env_steps_per_s"] else "— |",
        ]))
    if now_minutes:
        median = statistics.median(now_minutes)
        lines.append(f"| median | | {statistics.median(before_minutes):.1f} | | "
                     f"{f'{median:.1f}' if math.isfinite(median) else 'not reached'} | |")
    return "\n".join(lines)


def plot(results: Dict[str, Any], path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_time, by_steps) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in sorted(results["seeds"], key=int):
        evals = results["seeds"][key]["evaluations"]
        by_time.plot([e["seconds"] / 60 for e in evals], [e["success"] for e in evals], label=f"seed {key}")
        by_steps.plot([e["env_steps"] / 1e6 for e in evals], [e["success"] for e in evals], label=f"seed {key}")
    for ax, label in ((by_time, "wall minutes"), (by_steps, "env steps (millions)")):
        ax.axhline(target, color="grey", ls="--", lw=1)
        ax.axhline(1 / 3, color="grey", ls=":", lw=1)
        ax.set(xlabel=label, ylabel="greedy success", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=8)
    fig.suptitle("Passive Visual Match, delay 30, fixed colour order, ur-lstm: greedy evaluation", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: Dict[str, Any], out_dir: Path, target: float) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rl_time_to_solve.json").write_text(json.dumps(results, indent=1) + "\n")
    (out_dir / "rl_time_to_solve.md").write_text(table(results, target) + "\n")
    plot(results, out_dir / "rl_time_to_solve.png", target)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, value in asdict(Args()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = Args(**vars(parser.parse_args(argv)))

    import ray
    import torch

    from memory_agents.ray_init import init_ray

    out_dir = Path(args.out_dir)
    results = load_results(out_dir / "rl_time_to_solve.json")
    results["command"] = "OMP_NUM_THREADS=1 python benchmarks/rl_time_to_solve.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in asdict(args).items() if k != "out_dir")
    results["machine"] = {"processor": platform.processor() or platform.machine(),
                          "cpu_count": os.cpu_count(), "torch": torch.__version__, "ray": ray.__version__}
    init_ray(None, torch_threads=1, quiet=True)
    for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
        if str(seed) in results["seeds"]:
            print(f"seed {seed}: already measured, kept", flush=True)
            continue
        results["seeds"][str(seed)] = train_seed(seed, args)
        write(results, out_dir, args.target)  # after every seed: an interrupted run keeps it
    write(results, out_dir, args.target)
    print(table(results, args.target))
    return results


if __name__ == "__main__":
    main()
