"""Summarise a comparison of agent variants (issue 14): one `rllib train` run per variant (the
TVT release's agent options, other agent settings), then `rllib evaluate --probe` on its final
checkpoint.

    python benchmarks/agent_options_summary.py RUNS_DIR [--out docs/rl/agent_options_d0] \\
        [--label NAME=TEXT ...] [--title TEXT]

RUNS_DIR holds, per variant NAME, the experiment folder NAME/ (from ``rllib train ...
--storage-path RUNS_DIR --experiment-name NAME``) and NAME.eval.txt (the output of ``rllib
evaluate RUNS_DIR/NAME --episodes 300 --seed 100000 --probe``). Writes curves.csv (training
success per iteration), curves.png and results.md (a table: final training success, the
300-episode greedy evaluation, the memory probe), and copies the evaluation outputs.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np


def variant_label(name: str) -> str:
    m = re.search(r"par(\d)_rec([\d.]+)", name)
    if not m:
        return name
    par, rec = m.group(1) == "1", float(m.group(2))
    parts = ["last action + reward in" if par else "image only in",
             f"reconstruction x{rec:g}" if rec else "no reconstruction"]
    return ", ".join(parts)


def read_curve(experiment: Path) -> List[Dict[str, float]]:
    (progress,) = experiment.glob("*/progress.csv")
    rows = []
    for row in csv.DictReader(progress.open()):
        rows.append({"env_steps": float(row["num_env_steps_sampled_lifetime"]),
                     "success": float(row["env_runners/success"] or "nan"),
                     "entropy": float(row.get("learners/default_policy/entropy") or "nan")})
    return rows


def read_eval(path: Path) -> Dict[str, str]:
    text = path.read_text()
    success = re.search(r"success rate: ([\d.]+) \(95% CI ([\d.]+)-([\d.]+), (\d+)/(\d+)\)", text)
    probe = re.search(r"accuracy ([\d.]+) on (\d+) held-out episodes \(chance ([\d.]+)", text)
    touched = re.search(r"touched left ([\d.]+) / centre ([\d.]+) / right ([\d.]+) / none ([\d.]+)", text)
    return {"success": success.group(1) if success else "?",
            "touched": " / ".join(touched.groups()) if touched else "not recorded",
            "ci": f"{success.group(2)}-{success.group(3)}" if success else "?",
            "probe": probe.group(1) if probe else "?", "probe_chance": probe.group(3) if probe else "?"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs")
    parser.add_argument("--out", default="docs/rl/agent_options_d0")
    parser.add_argument("--label", action="append", default=[], metavar="NAME=TEXT",
                        help="the table's and figure's label of run NAME")
    parser.add_argument("--title", default="Passive Visual Match, delay 0, colour order per instance, ur-lstm, seed 0")
    args = parser.parse_args()
    labels = dict(item.split("=", 1) for item in args.label)
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in runs.iterdir() if p.is_dir() and (runs / f"{p.name}.eval.txt").is_file())
    curves = {n: read_curve(runs / n) for n in names}
    with (out / "curves.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "env_steps", "training_success", "entropy"])
        for n in names:
            for r in curves[n]:
                writer.writerow([n, int(r["env_steps"]), f"{r['success']:.4f}", f"{r['entropy']:.4f}"])
    lines = ["| variant | run | env steps | training success, last 10 iterations | greedy success, 300 episodes "
             "(95% CI) | greedy: touched left / centre / right / none | probe accuracy (chance) |",
             "|---|---|---:|---:|---:|---|---:|"]
    for n in names:
        ev = read_eval(runs / f"{n}.eval.txt")
        shutil.copy(runs / f"{n}.eval.txt", out / f"{n}.eval.txt")
        last = [r["success"] for r in curves[n][-10:]]
        label = labels.get(n, variant_label(n))
        lines.append(f"| {label} | `{n}` | {curves[n][-1]['env_steps']:,.0f} | {sum(last) / len(last):.2f} "
                     f"| {ev['success']} ({ev['ci']}) | {ev['touched']} | {ev['probe']} ({ev['probe_chance']}) |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for n in names:
        # A 10-iteration running mean: one iteration's 64 episodes are too noisy to read.
        success = np.convolve([r["success"] for r in curves[n]], np.ones(10) / 10, mode="valid")
        steps = [r["env_steps"] / 1e3 for r in curves[n]][9:]
        ax.plot(steps, success, label=labels.get(n, variant_label(n)), lw=1)
    ax.axhline(1 / 3, color="grey", ls=":", lw=1)
    ax.set(xlabel="env steps (thousands)", ylabel="training success\n(mean of 10 iterations)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(args.title, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)


if __name__ == "__main__":
    main()
