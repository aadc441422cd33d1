"""Export and evaluate the final agents of a match experiment: one folder per trial that
`rllib evaluate` runs, and one table of greedy success, behaviour and memory probe.

    python -m memory_agents.experiments.agents ~/ray_results/match --out docs/rl/passive_d30_release

For every finished trial of the experiment (a `python -m memory_agents.experiments.match`
grid; unfinished ones are skipped) it

- exports the final checkpoint's module to ``OUT/agents/<cell>-d<delay>-s<seed>/`` (`rllib
  export`: the module's files and ``agent.json``, about 1.8 MB; ``-d<delay>`` is left out
  when the grid has one delay);
- runs `rllib evaluate` on it: ``--episodes`` fresh greedy episodes (300), episode i reset
  with seed ``--seed`` + i (100000: never a training seed), with the memory probe;
- writes ``OUT/evaluations.csv`` (one row per trial) and ``OUT/evaluations.md`` (the table),
  and each evaluation's printout to ``OUT/agents/<name>.eval.txt``. Rows already in
  ``OUT/evaluations.csv`` for other trials (earlier sessions of the same grid) are kept.

Evaluate one agent again with ``rllib evaluate OUT/agents/<name> --episodes 300 --probe``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from memory_agents.experiments.match import trial_params

EVAL_COLUMNS = [
    "cell", "delay", "seed", "env_steps", "episodes", "success", "ci_low", "ci_high",
    "touched_left", "touched_centre", "touched_right", "touched_none", "median_touch_step",
    "probe_accuracy", "probe_chance", "agent",
]


def final_checkpoints(experiment: Path) -> List[Dict[str, Any]]:
    """(params, newest checkpoint, its env steps) of every trial that saved one."""
    trials = []
    for params_file in sorted(Path(experiment).glob("*/params.json")):
        params = trial_params(json.loads(params_file.read_text()))
        checkpoints = []
        for progress in params_file.parent.glob("checkpoint_*/match_progress.json"):
            steps = json.loads(progress.read_text())["env_steps"]
            checkpoints.append((steps, progress.parent))
        if not checkpoints:
            continue
        steps, checkpoint = max(checkpoints, key=lambda item: (item[0], str(item[1])))
        if steps < params.get("timesteps", 0):
            # Still running (or interrupted): its agent is not the run's final one.
            print(f"skipping {params_file.parent.name}: {steps:,} of {params['timesteps']:,} steps",
                  flush=True)
            continue
        trials.append({"params": params, "checkpoint": checkpoint, "env_steps": int(steps)})
    if not trials:
        raise FileNotFoundError(f"no trial of {experiment} has saved its final checkpoint")
    return trials


def agent_name(params: Dict[str, Any], one_delay: bool) -> str:
    delay = "" if one_delay else f"-d{params['delay']}"
    return f"{params['cell']}{delay}-s{params['seed']}"


def evaluate_trials(experiment: Path, out: Path, *, episodes: int = 300, seed: int = 100_000,
                    names: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    """Exports and evaluates every trial (or those whose agent name is in `names`)."""
    from memory_agents.rllib.evaluate import evaluate_checkpoint, export_agent, wilson_interval

    trials = final_checkpoints(experiment)
    one_delay = len({t["params"]["delay"] for t in trials}) == 1
    rows = []
    for trial in trials:
        params = trial["params"]
        name = agent_name(params, one_delay)
        if names and name not in names:
            continue
        folder = export_agent(str(trial["checkpoint"]), str(out / "agents" / name), overwrite=True)
        result = evaluate_checkpoint(str(folder), episodes=episodes, seed=seed, probe=True)
        (out / "agents" / f"{name}.eval.txt").write_text(result.summary() + "\n")
        wins = int(np.sum(result.successes))
        low, high = wilson_interval(wins, len(result.successes))
        touched = result.touched_squares
        steps = [s for s in result.touch_steps if s is not None]
        rows.append({
            "cell": params["cell"], "delay": params["delay"], "seed": params["seed"],
            "env_steps": trial["env_steps"], "episodes": episodes,
            "success": result.success_rate, "ci_low": low, "ci_high": high,
            **{f"touched_{side}": float(np.mean([t == i for t in touched]))
               for i, side in zip((0, 1, 2, None), ("left", "centre", "right", "none"))},
            "median_touch_step": float(np.median(steps)) if steps else float("nan"),
            "probe_accuracy": result.probe.accuracy, "probe_chance": result.probe.chance,
            "agent": f"agents/{name}",
        })
        print(f"{name}: success {result.success_rate:.3f} ({wins}/{episodes}), "
              f"probe {result.probe.accuracy:.3f}", flush=True)
    return rows


def merge_kept(rows: List[Dict[str, Any]], kept_csv: Path) -> List[Dict[str, Any]]:
    """`rows` plus the rows of an earlier evaluations.csv (earlier sessions' trials) that
    `rows` does not evaluate again."""
    if not kept_csv.is_file():
        return rows
    new = {(r["cell"], int(r["delay"]), int(r["seed"])) for r in rows}
    merged = list(rows)
    with open(kept_csv, newline="") as f:
        for old in csv.DictReader(f):
            if (old["cell"], int(old["delay"]), int(old["seed"])) in new:
                continue
            row: Dict[str, Any] = dict(old)
            for key in ("delay", "seed", "env_steps", "episodes"):
                row[key] = int(row[key])
            for key in EVAL_COLUMNS:
                if key not in ("cell", "agent") and not isinstance(row[key], int):
                    row[key] = float(row[key])
            merged.append(row)
    return merged


def write_tables(rows: List[Dict[str, Any]], out: Path, seed: int = 100_000) -> Dict[str, Path]:
    """evaluations.csv and .md of `rows` and of the earlier rows kept in OUT/evaluations.csv,
    both sorted by (delay, cell, seed)."""
    from memory_agents.rllib.evaluate import wilson_interval

    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "evaluations.csv", "md": out / "evaluations.md"}
    rows = sorted(merge_kept(rows, paths["csv"]), key=lambda r: (r["delay"], r["cell"], r["seed"]))
    for row in rows:
        # The interval follows from the success count, so a kept row (its CSV rounded) prints
        # the same interval as its own evaluation did.
        row["ci_low"], row["ci_high"] = wilson_interval(round(row["success"] * row["episodes"]), row["episodes"])
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EVAL_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    lines = [
        "| cell | delay | seed | env steps | greedy success (95% CI) | touched left / centre / right / none "
        "| median touch step | memory probe (chance) |",
        "|---|---:|---:|---:|---|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['cell']}` | {r['delay']} | {r['seed']} | {r['env_steps']:,} | "
            f"{r['success']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f}) | "
            f"{r['touched_left']:.2f} / {r['touched_centre']:.2f} / {r['touched_right']:.2f} / "
            f"{r['touched_none']:.2f} | {r['median_touch_step']:g} | "
            f"{r['probe_accuracy']:.3f} ({r['probe_chance']:.3f}) |"
        )
    lines.append("")
    lines.append(f"Each row: the trial's final checkpoint, exported to `{rows[0]['agent'].split('/')[0]}/`, "
                 f"{rows[0]['episodes']} fresh greedy episodes (`rllib evaluate --episodes "
                 f"{rows[0]['episodes']} --seed {seed} --probe`). Memory probe: a linear read-out of "
                 f"the phase-1 colour from the recurrent state at the end of the delay, fitted on "
                 f"half the episodes and scored on the other half.")
    paths["md"].write_text("\n".join(lines) + "\n")
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memory_agents.experiments.agents", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="a match experiment folder")
    parser.add_argument("--out", required=True, help="folder for agents/, evaluations.csv and .md")
    parser.add_argument("--episodes", type=int, default=300, help="fresh greedy episodes per agent (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=100_000, help="episode i is reset with seed+i (default: %(default)s, never a training seed)")
    args = parser.parse_args(argv)
    import torch

    from memory_agents.ray_init import quiet_process

    torch.set_num_threads(1)
    quiet_process()
    try:
        if args.episodes < 4:
            raise ValueError(f"--episodes must be at least 4 (the probe fits on half), got {args.episodes}")
        rows = evaluate_trials(Path(args.experiment).expanduser(), Path(args.out),
                               episodes=args.episodes, seed=args.seed)
    except (ValueError, FileNotFoundError) as err:
        print(f"agents: error: {err}", file=sys.stderr)
        return 2
    paths = write_tables(rows, Path(args.out), seed=args.seed)
    print(paths["md"].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
