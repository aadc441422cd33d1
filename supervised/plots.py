"""Learning-curve figures and mean ± std tables from runs' ``metrics.json`` histories."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Histories = Sequence[Sequence[dict[str, Any]]]  # one history (list of rows) per seed


def curve(histories: Histories, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and std over seeds of ``key``, at the steps every seed logged it."""
    per_seed = [{row["step"]: row[key] for row in history if key in row} for history in histories]
    steps = sorted(set.intersection(*(set(d) for d in per_seed))) if per_seed else []
    values = np.array([[d[s] for s in steps] for d in per_seed], dtype=float).reshape(len(per_seed), len(steps))
    return np.array(steps), values.mean(axis=0), values.std(axis=0)


def plot_learning_curves(runs: dict[str, Histories], keys: Sequence[str], path: str | Path, title: str,
                         baselines: dict[str, float] | None = None, log_y: Sequence[str] = ()) -> Path:
    """One panel per history key, one line per label (mean over seeds, shaded ± std)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, histories in runs.items():
            steps, mean, std = curve(histories, key)
            if len(steps) == 0:
                continue
            (line,) = ax.plot(steps, mean, label=f"{label} (n={len(histories)})")
            if len(histories) > 1:
                ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        if baselines and key in baselines:
            ax.axhline(baselines[key], color="gray", linestyle="--", label="baseline")
        if key in log_y:
            ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mean_std(values: Sequence[float], ddof: int = 0, scale: float = 1.0) -> str:
    """``mean ± std`` of the values (times ``scale``); ``ddof=1`` for the sample standard deviation."""
    values = [v * scale for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "n/a"
    return f"{np.mean(values):.4g} ± {np.std(values, ddof=ddof):.2g}" if len(values) > 1 else f"{values[0]:.4g}"
