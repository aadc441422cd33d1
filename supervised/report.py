"""The replication report, rebuilt from the committed CSVs alone.

    python -m supervised.report [--grid configs/supervised/replication.yaml] [--docs docs/replication]

Reads ``results.csv`` and ``curves.csv`` in ``--docs`` (written by ``python -m supervised.replication``)
and the grid file (sections, the paper's numbers and budgets, the planned trials), and writes
``REPLICATION.md``, ``curves-<section>.png`` and ``ablation.png`` beside them. Missing trials are
shown as pending, so a partial grid gives a partial report.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from supervised.config import ConfigError
from supervised.plots import mean_std, plot_learning_curves
from supervised.replication import CURVES, DOCS, GRID, METRICS, RESULTS, Grid, Section, load_grid

REPORT = "REPLICATION.md"
ALPHA = 0.05  # two-sided Welch t-test: a difference is "visible" below this p
LEARNT = 0.5  # a synthetic task counts as learnt once the validation loss is this fraction of the baseline
FAMILIES = (("ur-lstm", "lstm"), ("ur-gru", "gru"))  # (UR cell, its plain counterpart)
BUDGET_KEYS = (("hidden_size", "units"), ("seq_len", "train length"), ("eval_seq_len", "eval length"),
               ("epochs", "epochs"), ("steps", "steps"))


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def read_results(docs: Path) -> list[dict[str, Any]]:
    path = docs / RESULTS
    if not path.is_file():
        return []
    rows = []
    for row in csv.DictReader(open(path)):
        typed: dict[str, Any] = dict(row)
        typed["seed"] = int(row["seed"])
        for key, value in row.items():
            if key not in ("setting", "task", "cell", "seed", "primary_metric"):
                typed[key] = _number(value)
        rows.append(typed)
    return rows


def read_curves(docs: Path) -> dict[tuple[str, str, int], list[dict[str, float]]]:
    """(setting, cell, seed) -> history rows {"step": s, key: value, ...}, as metrics.json holds them."""
    path = docs / CURVES
    by_step: dict[tuple[str, str, int], dict[int, dict[str, float]]] = {}
    if path.is_file():
        for row in csv.DictReader(open(path)):
            step = int(row["step"])
            history = by_step.setdefault((row["setting"], row["cell"], int(row["seed"])), {})
            history.setdefault(step, {"step": step})[row["key"]] = float(row["value"])
    return {key: [rows[s] for s in sorted(rows)] for key, rows in by_step.items()}


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided Welch t-test p-value; nan when either side has fewer than 2 values or neither varies."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


class SectionData:
    """The rows of one section: final values per cell on the section's split, and its budget."""

    def __init__(self, grid: Grid, section: Section, rows: list[dict[str, Any]]):
        self.grid, self.section = grid, section
        self.setting = grid.settings[section.setting]
        self.rows = [r for r in rows if r["setting"] == section.setting and r["cell"] in section.cells]
        self.lower = METRICS[section.metric] == "lower"
        self.scale = 100.0 if section.metric == "accuracy" else 1.0

    def values(self, cell: str, split: str | None = None, metric: str | None = None) -> list[float]:
        key = f"{split or self.section.split}_{metric or self.section.metric}"
        return [r[key] for r in sorted(self.rows, key=lambda r: r["seed"]) if r["cell"] == cell and r.get(key) is not None]

    def mean(self, cell: str) -> float:
        values = self.values(cell)
        return float(np.mean(values)) if values else math.nan

    def better(self, a: float, b: float) -> bool:
        return a < b if self.lower else a > b

    @property
    def expected(self) -> int:
        return len(self.section.cells) * len(self.grid.seeds)

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.expected

    def baseline(self, split: str) -> float | None:
        values = [r[f"{split}_baseline_loss"] for r in self.rows if r.get(f"{split}_baseline_loss") is not None]
        return values[0] if values and self.section.metric == "loss" else None

    def pairs(self) -> list[tuple[str, str]]:
        return [(ur, plain) for ur, plain in FAMILIES if ur in self.section.cells and plain in self.section.cells]

    def compare(self, a: str, b: str, split: str | None = None) -> dict[str, Any]:
        va, vb = self.values(a, split), self.values(b, split)
        mean_a = float(np.mean(va)) if va else math.nan
        mean_b = float(np.mean(vb)) if vb else math.nan
        p = welch_p(va, vb)
        return {"a": a, "b": b, "n": (len(va), len(vb)), "diff": (mean_a - mean_b) * self.scale, "p": p,
                "a_better": self.better(mean_a, mean_b), "visible": p < ALPHA}


def budget_line(data: SectionData, rows: list[dict[str, Any]]) -> str:
    """Our values of the budget options against the paper's, with their ratio."""
    options, paper = data.setting.options, data.setting.paper
    parts = []
    for key, label in BUDGET_KEYS:
        ours = options.get(key)
        if ours is None and key == "steps" and rows:
            ours = rows[0]["steps"]  # an epochs budget: the steps it came to
            label = "optimizer steps"
        if ours is None:
            continue
        if paper.get(key):
            parts.append(f"{label} {ours:g} vs paper {paper[key]:g} ({ours / paper[key]:.2g}×)")
        else:
            unstated = key == "steps" and not paper.get("epochs")
            parts.append(f"{label} {ours:g}" + (" (paper: not stated)" if unstated else ""))
    if "data" in paper:
        parts.append(f"data: paper {paper['data']}")
    return "; ".join(parts)


def time_line(data: SectionData) -> str:
    times = [r["wall_time_s_last_process"] / 60 for r in data.rows if r.get("wall_time_s_last_process")]
    return f"{np.mean(times):.1f} min on average over {len(times)} trial(s)" if times else "pending"


def comparison_text(c: dict[str, Any], data: SectionData) -> str:
    if math.isnan(c["p"]):
        return f"{c['a']} vs {c['b']}: no test (needs ≥ 2 seeds each)"
    unit = " points" if data.section.metric == "accuracy" else ""
    sign = "ahead" if c["a_better"] else "behind"
    return (f"{c['a']} vs {c['b']}: {c['a']} {sign} by {abs(c['diff']):.3g}{unit} "
            f"(Welch p = {c['p']:.2g}: {'visible' if c['visible'] else 'NOT visible'} at {min(c['n'])} seeds)")


def verdict(data: SectionData, curves: dict) -> tuple[str, str]:
    """(reproduced | partly | not | pending | comparison only, one line why)."""
    section = data.section
    if not data.complete:
        return "pending", f"{len(data.rows)}/{data.expected} trials finished"
    if section.kind == "trend":
        return "comparison only", trend_text(data, curves)
    if section.kind == "ablation":
        means = {cell: data.mean(cell) for cell in section.cells}
        best = min(means, key=means.get) if data.lower else max(means, key=means.get)
        near = best == "ur-lstm" or not data.compare("ur-lstm", best)["visible"]
        vs_lstm = data.compare("ur-lstm", "lstm")
        rank = sorted(means, key=means.get, reverse=not data.lower).index("ur-lstm") + 1
        why = (f"ur-lstm ranks {rank}/{len(means)} (best: {best}{'' if near else ', visibly ahead of ur-lstm'}); "
               + comparison_text(vs_lstm, data))
        baseline = data.baseline(section.split)
        if baseline is not None and not data.better(means["ur-lstm"], baseline):
            return "not", f"ur-lstm does not beat the no-memory baseline {baseline:.3g}; " + why
        if near and vs_lstm["a_better"] and vs_lstm["visible"]:
            return "reproduced", why
        if near or vs_lstm["a_better"]:
            return "partly", why
        return "not", why
    comparisons = [data.compare(a, b) for a, b in data.pairs()]
    why = "; ".join(comparison_text(c, data) for c in comparisons)
    baseline = data.baseline(section.split)
    if baseline is not None:
        beaten = [a for a, _ in data.pairs() if data.better(data.mean(a), baseline)]
        why += f"; UR cells below the no-memory baseline {baseline:.3g}: {', '.join(beaten) or 'none'}"
    if all(c["a_better"] and c["visible"] for c in comparisons):
        return "reproduced", why
    if any(c["visible"] and not c["a_better"] for c in comparisons) or not any(c["a_better"] for c in comparisons):
        return "not", why
    return "partly", why


def trend_text(data: SectionData, curves: dict) -> str:
    """How the ur-lstm minus lstm gap of the validation metric moves from the first evaluation to the end."""
    key = f"val_{data.section.metric}"

    def gap_at(index: int) -> tuple[int, float]:
        per_cell = {}
        for cell in ("ur-lstm", "lstm"):
            points = [[r for r in curves.get((data.section.setting, cell, seed), []) if key in r] for seed in data.grid.seeds]
            per_cell[cell] = [p[index][key] for p in points if p]
            step = next(p[index]["step"] for p in points if p)
        return step, float(np.mean(per_cell["ur-lstm"]) - np.mean(per_cell["lstm"]))

    (first_step, first), (last_step, last) = gap_at(0), gap_at(-1)
    lead = lambda gap: ("lstm" if data.better(0, gap) else "ur-lstm") + f" ahead by {abs(gap):.3g}"  # noqa: E731
    if math.copysign(1, first) != math.copysign(1, last):
        move = "the gap reversed"
    else:
        move = "the gap grew" if abs(last) > abs(first) else "the gap closed in"
    final = comparison_text(data.compare("ur-lstm", "lstm"), data)
    return f"validation {data.section.metric} at step {first_step}: {lead(first)}; at step {last_step}: {lead(last)}: {move}. Test: {final}"


def steps_to_learn(data: SectionData, curves: dict, cell: str) -> str:
    """When each seed's validation loss first fell to LEARNT x the no-memory baseline: a speed, which
    the final loss hides once several cells have learnt the task."""
    baseline = data.baseline("val")
    reached = []
    for seed in data.grid.seeds:
        history = curves.get((data.section.setting, cell, seed))
        if history is None:
            continue
        reached.append(next((r["step"] for r in history if r.get("val_loss", math.inf) <= LEARNT * baseline), None))
    steps = [s for s in reached if s is not None]
    if not reached:
        return "pending"
    return (f"{np.mean(steps):.0f}" if steps else "never") + f" ({len(steps)}/{len(reached)})"


def section_table(data: SectionData, curves: dict) -> list[str]:
    section = data.section
    metric = section.metric + (" (%)" if section.metric == "accuracy" else "")
    show_recall = section.metric == "loss" and any(r.get("val_accuracy") is not None for r in data.rows)
    synthetic = data.setting.options["task"] in ("copy", "adding")
    split_names = ({"val": f"train length {data.setting.options.get('seq_len')}",
                    "test": f"eval length {data.setting.options.get('eval_seq_len')}"} if synthetic
                   else {"val": "validation", "test": "test"})
    head = [f"{metric}, {split_names['val']}", f"{metric}, {split_names['test']}"]
    if show_recall:
        head += [f"recall (%), {split_names['val']}", f"recall (%), {split_names['test']}"]
    speed = data.baseline("val") is not None
    if speed:
        head.append(f"steps until val loss ≤ {LEARNT:g}× baseline (seeds that got there)")
    lines = [f"| cell | seeds | {' | '.join(head)} |", "|---|---|" + "---|" * len(head)]
    for cell in section.cells:
        n = len(data.values(cell))
        if n == 0:
            lines.append(f"| {cell} | 0/{len(data.grid.seeds)} | " + " | ".join("pending" for _ in head) + " |")
            continue
        cells = [mean_std(data.values(cell, split), ddof=1, scale=data.scale) for split in ("val", "test")]
        if show_recall:
            cells += [mean_std(data.values(cell, split, "accuracy"), ddof=1, scale=100.0) for split in ("val", "test")]
        if speed:
            cells.append(steps_to_learn(data, curves, cell))
        mark = lambda text, split: f"**{text}**" if split == section.split else text  # noqa: E731
        cells[:2] = [mark(cells[0], "val"), mark(cells[1], "test")]
        lines.append(f"| {cell} | {n}/{len(data.grid.seeds)} | " + " | ".join(cells) + " |")
    baselines = [data.baseline(split) for split in ("val", "test")]
    if any(b is not None for b in baselines):
        lines.append("| *baseline (no memory)* | | " + " | ".join(f"{b:.4g}" if b is not None else "" for b in baselines)
                     + (" | 12.5 | 12.5" if show_recall else "") + (" | |" if speed else " |"))
    return lines


def plot_section(data: SectionData, curves: dict, path: Path) -> Path | None:
    section = data.section
    metric = section.metric
    keys = [f"train_{metric}" if metric != "accuracy" else "train_loss", f"val_{metric}"]
    if metric == "loss" and any("val_accuracy" in r for (s, _, _), h in curves.items() if s == section.setting for r in h):
        keys.append("val_accuracy")
    runs = {cell: [curves[(section.setting, cell, seed)] for seed in data.grid.seeds
                   if (section.setting, cell, seed) in curves] for cell in section.cells}
    runs = {cell: histories for cell, histories in runs.items() if histories}
    if not runs:
        return None
    baseline = data.baseline("val")
    baselines = {"train_loss": baseline, "val_loss": baseline} if baseline is not None else None
    log_y = [k for k in keys if k.endswith(("loss", "perplexity"))]
    return plot_learning_curves(runs, keys, path, f"{section.title}: mean ± std over seeds", baselines, log_y)


def plot_ablation(datas: list[SectionData], path: Path) -> Path | None:
    """Final metric per preset, one dot per seed, a bar at the mean: at the training and evaluation lengths."""
    import matplotlib.pyplot as plt

    datas = [d for d in datas if d.rows]
    if not datas:
        return None
    fig, axes = plt.subplots(len(datas), 2, figsize=(12, 3.8 * len(datas)), squeeze=False)
    for row, data in zip(axes, datas):
        for ax, split in zip(row, ("val", "test")):
            cells = data.section.cells
            for x, cell in enumerate(cells):
                values = data.values(cell, split)
                if not values:
                    continue
                jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
                ax.scatter(x + jitter, values, color="C3" if cell == "ur-lstm" else "C0", s=22, zorder=3)
                ax.hlines(np.mean(values), x - 0.3, x + 0.3, color="black", linewidth=2, zorder=2)
            baseline = data.baseline(split)
            if baseline is not None:
                ax.axhline(baseline, color="gray", linestyle="--", label="baseline (no memory)")
                ax.legend(loc="best", fontsize=8)
            ax.set_xticks(range(len(cells)), cells, rotation=30)
            ax.set_yscale("log")
            length = data.setting.options.get("seq_len" if split == "val" else "eval_seq_len")
            ax.set_title(f"{data.section.title.split('(')[0].strip()}: {split} (length {length})", fontsize=10)
            ax.set_ylabel(f"final {data.section.metric}")
            ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Gate ablation: final metric per preset (dots: seeds; bar: mean; lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def build_report(grid_path: str | Path = GRID, docs: str | Path = DOCS) -> Path:
    grid = load_grid(grid_path)
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    rows, curves = read_results(docs), read_curves(docs)
    datas = [SectionData(grid, section, rows) for section in grid.sections]
    done = {(r["setting"], r["cell"], r["seed"]) for r in rows}
    planned = grid.planned()
    finished = sum(1 for trial in planned if trial in done)
    lines = [
        "# Replication: the paper's supervised comparisons and gate ablation, 3 seeds, CPU budgets",
        "",
        f"Generated by `python -m supervised.report` from `{RESULTS}` and `{CURVES}` in this folder and the grid "
        f"file `{grid_path}`; the trials are run (or continued) by `python -m supervised.replication [--resume]`. "
        f"**{finished} of {len(planned)} trials finished**; sections with missing seeds say *pending*.",
        "",
        "Every cell of a section has the same settings and budget; the budgets are far below the paper's "
        "(ratios per section). Numbers are mean ± sample standard deviation over seeds; the verdict's column is "
        "in bold. \"Visible\" means a two-sided Welch t-test gives p < 0.05 over the seeds; with 3 seeds a "
        "difference that is not visible may still be real.",
        "",
        "| section | verdict | why |",
        "|---|---|---|",
    ]
    verdicts = {d.section.name: verdict(d, curves) for d in datas}
    for data in datas:
        word, why = verdicts[data.section.name]
        lines.append(f"| [{data.section.title}](#{data.section.name}) | **{word}** | {why} |")
    for data in datas:
        section = data.section
        word, why = verdicts[section.name]
        lines += ["", f"<a id=\"{section.name}\"></a>", f"## {section.title}", "",
                  f"- **Paper:** {section.paper}",
                  f"- **Budget:** {budget_line(data, data.rows)}",
                  f"- **Time per trial** (one CPU thread, shared machine; a resumed trial counts its last process "
                  f"only): {time_line(data)}",
                  f"- **Verdict ({section.split} {section.metric}): {word}.** {why}", ""]
        lines += section_table(data, curves)
        if data.section.kind != "trend":
            other_split = "test" if section.split == "val" else "val"
            comparisons = [data.compare(a, b, other_split) for a, b in data.pairs()]
            if comparisons and all(c["n"][0] and c["n"][1] for c in comparisons):
                lines += ["", f"On the {other_split} split: " + "; ".join(comparison_text(c, data) for c in comparisons) + "."]
        png = plot_section(data, curves, docs / f"curves-{section.name}.png")
        if png is not None:
            lines += ["", f"![{section.title}]({png.name})"]
    lines += ["", "## ur-lstm against lstm, every section", "",
              "| section | split | difference (ur-lstm − lstm) | Welch p | visible? |", "|---|---|---|---|---|"]
    for data in datas:
        for split in ("val", "test"):
            c = data.compare("ur-lstm", "lstm", split)
            if min(c["n"]) < 2:
                lines.append(f"| {data.section.title} | {split} | pending | | |")
                continue
            lines.append(f"| {data.section.title} | {split} | {c['diff']:+.3g} | {c['p']:.2g} | "
                         f"{'yes' if c['visible'] else '**no**'} |")
    ablation = plot_ablation([d for d in datas if d.section.kind == "ablation"], docs / "ablation.png")
    if ablation is not None:
        lines += ["", "## The gate ablation", "", f"![gate ablation]({ablation.name})"]
    path = docs / REPORT
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m supervised.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default=GRID, help="the grid file (default: %(default)s)")
    parser.add_argument("--docs", default=DOCS, help="folder of results.csv and curves.csv; the report goes there (default: %(default)s)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        print(build_report(args.grid, args.docs))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
