"""Summarise the measured runs of benchmarks/supervised_measured.sh.

    python benchmarks/supervised_summary.py runs/supervised-bench

Writes benchmarks/results/supervised_measured.json and .md (final numbers) and
docs/supervised/<task>.png (learning curves of ur-lstm vs lstm).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supervised.plots import plot_learning_curves  # noqa: E402

GATES_TASK = "adding"  # whose trained gates docs/supervised/gates.png shows

# Run-name prefix -> (title, history keys to plot, key of the final number, log-scale keys)
TASKS = {
    "adding": ("Adding task, T=200 (eval T=1000), 128 units", ["train_loss", "val_loss"], "loss", ["train_loss", "val_loss"]),
    "copy": ("Copy task, N=20 (eval N=40), 128 units", ["train_loss", "val_loss", "val_accuracy"], "loss", ["train_loss", "val_loss"]),
    "fashion": ("Sequential Fashion-MNIST, 784 steps, 128 units", ["train_loss", "val_accuracy"], "accuracy", []),
    "ptb": ("Penn Treebank word level, 128 units, 1 epoch", ["train_perplexity", "val_perplexity"], "perplexity", ["train_perplexity", "val_perplexity"]),
}
CELLS = ("ur-lstm", "lstm")


def plot_gates(runs_dir: Path, path: Path) -> None:
    """Effective-gate values g and timescales 1/(1-g) of the trained models on 16 training sequences."""
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from supervised.config import TrainConfig, resolve
    from supervised.model import SequenceModel
    from supervised.tasks import build_task

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for cell in CELLS:
        saved = torch.load(runs_dir / f"{GATES_TASK}-{cell}" / "checkpoint.pt", weights_only=False)
        cfg = resolve(TrainConfig(**saved["config"]))
        task = build_task(cfg)
        model = SequenceModel(cfg.cell, task.input_size, task.output_size, cfg.hidden_size, cfg.num_layers)
        model.load_state_dict(saved["model"])
        g = model.gate_trace(task.train_batch(0)[0][:16])["g"].double().flatten().numpy()
        axes[0].hist(g, bins=50, histtype="step", density=True, label=cell)
        timescale = 1.0 / np.clip(1.0 - g, 1e-9, None)
        axes[1].hist(np.log10(timescale), bins=50, histtype="step", density=True, label=cell)
    axes[0].set_xlabel("effective gate g")
    axes[1].set_xlabel("log10 timescale 1/(1-g)  [steps]")
    for ax in axes:
        ax.set_ylabel("density")
        ax.legend()
    fig.suptitle(f"Trained gates on the {GATES_TASK} task ({saved['step']} steps)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(runs_dir: str) -> None:
    runs_dir = Path(runs_dir)
    summary: dict[str, dict] = {}
    lines = ["| task | cell | steps | wall time (s) | final val | final test | baseline (val / test) |",
             "|---|---|---|---|---|---|---|"]
    for name, (title, keys, final_key, log_keys) in TASKS.items():
        results = {}
        for cell in CELLS:
            path = runs_dir / f"{name}-{cell}" / "metrics.json"
            if path.is_file():
                results[cell] = json.loads(path.read_text())
        if not results:
            continue
        baselines = {}
        any_result = next(iter(results.values()))
        if "baseline_loss" in any_result:
            baselines = {"val_loss": any_result["baseline_loss"]["val"], "train_loss": any_result["baseline_loss"]["val"]}
        plot_learning_curves({cell: [r["history"]] for cell, r in results.items()}, keys,
                             ROOT / "docs" / "supervised" / f"{name}.png", title, baselines, log_keys)
        summary[name] = {}
        for cell, r in results.items():
            summary[name][cell] = {"steps": r["steps"], "wall_time_s": r["wall_time_s_this_process"],
                                   "val": r["val"], "test": r["test"], "baseline_loss": r.get("baseline_loss"),
                                   "config": r["config"]}
            base = r.get("baseline_loss")
            base_text = f"{base['val']:.4g} / {base['test']:.4g}" if base else ""
            lines.append(f"| {name} | {cell} | {r['steps']} | {r['wall_time_s_this_process']:.0f} | "
                         f"{final_key} {r['val'][final_key]:.4g} | {final_key} {r['test'][final_key]:.4g} | {base_text} |")
    if all((runs_dir / f"{GATES_TASK}-{cell}" / "checkpoint.pt").is_file() for cell in CELLS):
        plot_gates(runs_dir, ROOT / "docs" / "supervised" / "gates.png")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "supervised_measured.json").write_text(json.dumps(summary, indent=2))
    (out / "supervised_measured.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/supervised-bench")
