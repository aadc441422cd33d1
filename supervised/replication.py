"""The replication grid: the paper's supervised comparisons and gate ablation, 3 seeds per cell.

    python -m supervised.replication                       # run configs/supervised/replication.yaml
    python -m supervised.replication --resume              # continue it after any interruption
    python -m supervised.replication --dry-run             # print the plan, run nothing

The grid file names *settings* (one ``python -m supervised.sweep`` directory each, under
``--runs``), *phases* (run in order: one sweep over the phase's cells x the seeds, seed 0 of every
cell first) and the report's *sections*. Trials run one at a time on a local Ray instance of one
CPU; ``--max-concurrent N`` runs N at once on N CPUs, for a machine with nothing else to do. Each
time a trial finishes, ``--docs`` gets ``results.csv`` (one row per setting x cell x seed: budget
and final metrics) and ``curves.csv`` (the learning curves), rebuilt from the finished trials'
``metrics.json``, and then the report (``python -m supervised.report``).
``--resume`` on a machine without the run directories (a fresh clone) takes the committed
``results.csv`` rows as finished trials instead of training them again.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from supervised.cli import check_values
from supervised.config import ConfigError, TrainConfig, resolve
from supervised.readers import DataError
from supervised.sweep import SweepArgs, SweepInterrupted, check_sweep, finished_record, run_sweep, sweep_base, trial_config, trial_order

GRID = "configs/supervised/replication.yaml"
DOCS = "docs/replication"
RUNS = "runs/replication"
RESULTS, CURVES = "results.csv", "curves.csv"
# Final metrics kept in results.csv: <split>_<name> for each split.
FINAL_METRICS = ("loss", "accuracy", "perplexity", "baseline_loss")
CURVE_KEYS = ("train_loss", "train_accuracy", "train_perplexity", "val_loss", "val_accuracy", "val_perplexity")
RESULT_COLUMNS = ["setting", "task", "cell", "seed", "steps", "epochs", "hidden_size", "seq_len", "eval_seq_len",
                  "primary_metric", *(f"{split}_{m}" for split in ("val", "test") for m in FINAL_METRICS),
                  "wall_time_s_last_process"]
SECTION_KEYS = {"name", "title", "setting", "cells", "metric", "split", "kind", "paper"}
KINDS = ("comparison", "ablation", "trend")
METRICS = {"loss": "lower", "perplexity": "lower", "accuracy": "higher"}


@dataclass
class Setting:
    name: str
    options: dict[str, Any]
    paper: dict[str, Any]

    def config(self) -> TrainConfig:
        return TrainConfig(**self.options)


@dataclass
class Section:
    name: str
    title: str
    setting: str
    cells: list[str]
    metric: str
    split: str
    paper: str
    kind: str = "comparison"


@dataclass
class Grid:
    seeds: list[int]
    settings: dict[str, Setting]
    phases: list[tuple[str, list[str]]]
    sections: list[Section]

    def planned(self) -> list[tuple[str, str, int]]:
        """(setting, cell, seed) of every trial, in the order the grid runs them."""
        return [(setting, cell, seed) for setting, cells in self.phases for cell, seed in trial_order(cells, self.seeds)]


def _mapping(value: Any, where: str, keys: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    unknown, missing = sorted(set(value) - keys), sorted(required - set(value))
    if unknown or missing:
        raise ConfigError(f"{where}: " + "; ".join(([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
                                                   + ([f"missing key(s) {', '.join(missing)}"] if missing else [])))
    return value


def load_grid(path: str | Path) -> Grid:
    """Read and check the grid file; every problem is a ConfigError naming the place in the file."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read grid {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"grid {path} is not valid YAML: {e}") from None
    raw = _mapping(raw, f"grid {path}", {"seeds", "settings", "phases", "sections"}, {"seeds", "settings", "phases", "sections"})
    seeds = raw["seeds"]
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"grid {path}: seeds must be a list of integers")
    settings = {}
    for name, value in _mapping(raw["settings"], "settings", set(raw["settings"] or {}), set()).items():
        value = _mapping(value, f"setting {name}", {"options", "paper"}, {"options"})
        options = {str(k).replace("-", "_"): v for k, v in _mapping(value["options"], f"setting {name}: options",
                                                                       set(value["options"] or {}), {"task"}).items()}
        check_values(options, f"setting {name}")
        if "cell" in options or "seed" in options or "out" in options:
            raise ConfigError(f"setting {name}: cell, seed and out are the grid's, not a setting's")
        settings[name] = Setting(name, options, dict(value.get("paper") or {}))
        resolve(settings[name].config())  # bad values fail here, before anything runs
    phases = []
    for i, phase in enumerate(raw["phases"] or []):
        phase = _mapping(phase, f"phase {i + 1}", {"setting", "cells"}, {"setting", "cells"})
        if phase["setting"] not in settings:
            raise ConfigError(f"phase {i + 1}: unknown setting {phase['setting']!r}")
        check_sweep(SweepArgs(cells=phase["cells"], seeds=seeds))
        phases.append((phase["setting"], list(phase["cells"])))
    runs = {(s, c) for s, cells in phases for c in cells}
    if len(runs) < sum(len(cells) for _, cells in phases):
        raise ConfigError("two phases run the same cell on the same setting")
    sections = []
    for i, value in enumerate(raw["sections"] or []):
        value = _mapping(value, f"section {i + 1}", SECTION_KEYS, SECTION_KEYS - {"kind"})
        section = Section(**value)
        missing = [c for c in section.cells if (section.setting, c) not in runs]
        if missing:
            raise ConfigError(f"section {section.name}: no phase runs {', '.join(missing)} on {section.setting!r}")
        if section.metric not in METRICS or section.split not in ("val", "test") or section.kind not in KINDS:
            raise ConfigError(f"section {section.name}: metric must be one of {', '.join(METRICS)}, split val or test, "
                              f"kind one of {', '.join(KINDS)}")
        sections.append(section)
    return Grid(list(seeds), settings, phases, sections)


def sweep_dir(runs: str | Path, setting: str) -> Path:
    return Path(runs).resolve() / setting


def result_row(setting: Setting, record: dict[str, Any]) -> dict[str, Any]:
    cfg = record["config"]
    row = {"setting": setting.name, "task": cfg["task"], "cell": record["cell"], "seed": record["seed"],
           "steps": record["steps"], "epochs": cfg["epochs"] if cfg["steps"] is None else "",
           "hidden_size": cfg["hidden_size"], "primary_metric": record["primary_metric"],
           "seq_len": cfg["seq_len"] if cfg["task"] in ("copy", "adding") else "",
           "eval_seq_len": cfg["eval_seq_len"] if cfg["task"] in ("copy", "adding") else "",
           "wall_time_s_last_process": record["wall_time_s"]}
    row.update({f"{split}_{m}": record["final"].get(f"{split}_{m}", "") for split in ("val", "test") for m in FINAL_METRICS})
    return row


def collect(grid: Grid, runs: str | Path, docs: str | Path) -> int:
    """Rewrite results.csv and curves.csv from every finished trial of the grid; returns how many."""
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    rows, curves = [], []
    for name, cell, seed in grid.planned():
        setting = grid.settings[name]
        record = finished_record(trial_config(sweep_base(setting.config(), sweep_dir(runs, name)),
                                              sweep_dir(runs, name), cell, seed))
        if record is None:
            continue
        rows.append(result_row(setting, record))
        curves += [{"setting": name, "cell": cell, "seed": seed, "step": r["step"], "key": k, "value": r[k]}
                   for r in record["history"] for k in CURVE_KEYS if k in r]
    for filename, columns, table in ((RESULTS, RESULT_COLUMNS, rows), (CURVES, ["setting", "cell", "seed", "step", "key", "value"], curves)):
        tmp = docs / (filename + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(table)
        tmp.replace(docs / filename)
    return len(rows)


def restore(grid: Grid, runs: str | Path, docs: str | Path) -> int:
    """Give trials that ``results.csv`` holds but ``--runs`` lacks their ``metrics.json`` back.

    The CSVs are what the repository keeps; the run directories stay on the machine that ran
    them. A ``--resume`` on another machine (or after ``runs/`` was cleaned) would otherwise
    train every committed trial again and then rewrite the CSVs without them. The restored
    record holds the final metrics, the curves and the trial's settings (so a changed grid is
    still refused by the sweep's settings check), marked ``"restored_from"``.
    """
    from supervised.train import METRICS

    docs = Path(docs)
    try:
        with open(docs / RESULTS, newline="") as f:
            rows = {(r["setting"], r["cell"], int(r["seed"])): r for r in csv.DictReader(f)}
    except FileNotFoundError:
        return 0
    history: dict[tuple[str, str, int], dict[int, dict[str, Any]]] = {}
    if (docs / CURVES).exists():
        with open(docs / CURVES, newline="") as f:
            for r in csv.DictReader(f):
                steps = history.setdefault((r["setting"], r["cell"], int(r["seed"])), {})
                steps.setdefault(int(r["step"]), {"step": int(r["step"])})[r["key"]] = float(r["value"])
    restored = 0
    for key in grid.planned():
        name, cell, seed = key
        if key not in rows:
            continue
        cfg = trial_config(sweep_base(grid.settings[name].config(), sweep_dir(runs, name)), sweep_dir(runs, name),
                           cell, seed)
        if finished_record(cfg) is not None:
            continue
        row = rows[key]
        final = {split: {m: float(row[f"{split}_{m}"]) for m in FINAL_METRICS if row.get(f"{split}_{m}", "") != ""}
                 for split in ("val", "test")}
        results = {"task": row["task"], "cell": cell, "seed": seed, "steps": int(row["steps"]), **final,
                   "primary_metric": row["primary_metric"],
                   "wall_time_s_this_process": float(row["wall_time_s_last_process"] or 0.0),
                   "config": resolve(cfg).to_dict(),
                   "history": [h for _, h in sorted(history.get(key, {}).items())],
                   "restored_from": str(docs / RESULTS)}
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS).write_text(json.dumps(results, indent=2))
        restored += 1
    return restored


def refresh(grid_path: str | Path, grid: Grid, runs: str | Path, docs: str | Path) -> None:
    """CSVs, then the report; a failing report is logged, never the end of the grid."""
    from supervised.report import build_report

    done = collect(grid, runs, docs)
    try:
        build_report(grid_path, docs)
    except Exception as e:  # noqa: BLE001 - the grid's hours of training matter more than a figure
        print(f"report not rebuilt: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"replication: {done}/{len(grid.planned())} trials in {Path(docs) / RESULTS}", file=sys.stderr, flush=True)


def check_data(grid: Grid) -> None:
    """Read every data set the grid needs before the first trial (Penn Treebank is exported if missing)."""
    from supervised.prepare_ptb import export_ptb
    from supervised.readers import read_mnist, read_word_corpus

    for setting in grid.settings.values():
        cfg = resolve(setting.config())
        if cfg.task == "wikitext103" and not any(Path(cfg.data_dir).glob("*.txt")) \
                and not any(Path(cfg.data_dir).glob("*.tokens")):
            print(f"exporting Penn Treebank to {cfg.data_dir}", file=sys.stderr)
            export_ptb(cfg.data_dir)
        if cfg.task in ("smnist", "pmnist"):
            read_mnist(cfg.data_dir)
        elif cfg.task == "wikitext103":
            read_word_corpus(cfg.data_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m supervised.replication", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default=GRID, help="the grid file (default: %(default)s)")
    parser.add_argument("--runs", default=RUNS, help="where the trials' run directories go (default: %(default)s)")
    parser.add_argument("--docs", default=DOCS, help="where results.csv, curves.csv and the report go (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue the grid: finished trials are kept, unfinished ones resumed")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--max-concurrent", type=int, default=1, metavar="N",
                        help="trials at once, one CPU and one torch thread each (default: %(default)s). Raise it only "
                             "when nothing else trains on the machine: the report's times are per trial")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        grid = load_grid(args.grid)
        if args.dry_run:
            for setting, cell, seed in grid.planned():
                print(f"{setting:<14} {cell:<14} seed {seed}")
            print(f"{len(grid.planned())} trials")
            return
        sweeps = [(setting, SweepArgs(cells=cells, seeds=grid.seeds, out=str(sweep_dir(args.runs, setting)),
                                      num_cpus=args.max_concurrent, max_concurrent=args.max_concurrent,
                                      resume=args.resume)) for setting, cells in grid.phases]
        for _, sweep in sweeps:
            check_sweep(sweep)
        check_data(grid)
        if args.resume and (n := restore(grid, args.runs, args.docs)):
            print(f"replication: {n} finished trials restored from {Path(args.docs) / RESULTS}", file=sys.stderr)
        refresh(args.grid, grid, args.runs, args.docs)
        for setting, sweep in sweeps:
            run_sweep(sweep, sweep_base(grid.settings[setting].config(), sweep.out),
                      on_trial_done=lambda record: refresh(args.grid, grid, args.runs, args.docs))
        refresh(args.grid, grid, args.runs, args.docs)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except SweepInterrupted as e:
        # The report already holds every trial that finished (refresh runs on each).
        print(f"replication {e}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
