"""One `rllib train` run's learning curve as a CSV and a PNG: training and greedy-evaluation
success, and the policy's entropy, per iteration (from the trial's result.json).

    python benchmarks/rl_run_curve.py RUNS/NAME --out docs/rl/some_run [--title TEXT]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def read(experiment: Path):
    (result_file,) = Path(experiment).glob("*/result.json")
    rows = []
    for line in result_file.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        evaluation = r.get("evaluation", {}).get("env_runners", {}).get("success")
        rows.append({
            "iteration": r["training_iteration"], "env_steps": int(r["num_env_steps_sampled_lifetime"]),
            "train_success": round(r["env_runners"]["success"], 4),
            "eval_success": "" if evaluation is None else round(evaluation, 4),
            "entropy": round(r["learners"]["default_policy"]["entropy"], 4),
            "vf_explained_var": round(r["learners"]["default_policy"]["vf_explained_var"], 4),
            "time_total_s": round(r["time_total_s"], 1),
        })
    # A resumed run repeats the iterations after its last checkpoint: keep the rerun.
    by_iteration = {row["iteration"]: row for row in rows}
    return [by_iteration[i] for i in sorted(by_iteration)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    rows = read(Path(args.experiment))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["env_steps"] / 1e6 for r in rows]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.5, 5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.plot(steps, [r["train_success"] for r in rows], lw=0.8, label="training episodes (sampled actions)")
    evals = [(s, r["eval_success"]) for s, r in zip(steps, rows) if r["eval_success"] != ""]
    ax.plot([s for s, _ in evals], [e for _, e in evals], "o-", ms=2.5, lw=1, label="greedy evaluation (32 episodes)")
    ax.axhline(1 / 3, color="grey", ls=":", lw=1, label="chance (1/3)")
    ax.set(ylabel="success rate", ylim=(-0.02, 1.02), title=args.title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    ax2.plot(steps, [r["entropy"] for r in rows], lw=0.8, color="C2")
    ax2.set(xlabel="env steps (millions)", ylabel="policy entropy", ylim=(0, 1.45))
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=110)
    first = next((r for r in rows if r["eval_success"] != "" and r["eval_success"] >= 0.9), None)
    print(f"{len(rows)} iterations, {rows[-1]['env_steps']:,} env steps; first greedy evaluation >= 0.9: "
          + (f"{first['eval_success']} at {first['env_steps']:,} steps ({first['time_total_s'] / 60:.1f} min)"
             if first else "none"))


if __name__ == "__main__":
    main()
