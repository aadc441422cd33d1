"""Sweep cells x seeds of one supervised experiment through Ray Tune.

    python -m supervised.sweep adding --cells ur-lstm lstm --seeds 0 1 2 --out runs/sweep-adding \\
        --steps 2000 --hidden-size 128

Every option after the sweep's own (``--cells``, ``--seeds``, ``--out``, ``--num-cpus``,
``--address``, ``--max-concurrent``) is a ``python -m supervised`` option (``--config`` too) and
fixes the base run (see ``python -m supervised --help``). Each trial is one ``supervised.train.train`` call, reporting its history rows
to Tune; the results are read back from Tune's ResultGrid, so the same command spreads over a Ray
cluster (``--address auto``) unchanged. Writes to ``--out``:

* ``results.csv``: one row per trial (cell, seed, final val/test metrics)
* ``results.md``: mean ± std over seeds per cell
* ``curves.png``: learning curves per cell (mean ± std over seeds)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervised.cli import config_from_args
from supervised.config import ConfigError, TrainConfig, resolve
from supervised.plots import mean_std, plot_learning_curves
from supervised.readers import DataError

FINAL_PREFIX = "final_"  # Tune keys of the last report: final_val_loss, final_test_accuracy, ...


def _arg(default: Any, help: str) -> Any:
    # A factory, so that no two SweepArgs share one default list.
    return field(default_factory=lambda: list(default) if isinstance(default, list) else default, metadata={"help": help})


@dataclass
class SweepArgs:
    cells: list[str] = _arg(["ur-lstm", "lstm"], "cell presets to compare")
    seeds: list[int] = _arg([0, 1, 2], "seeds per cell; the table reports mean ± std over them")
    out: str = _arg("runs/sweep", "sweep directory: Tune's results, the trials' run directories, CSV, table, PNG")
    num_cpus: int = _arg(2, "CPUs of the local Ray instance (ignored with --address)")
    address: str | None = _arg(None, "address of a running Ray cluster ('auto' finds one); default: start a local one")
    max_concurrent: int = _arg(2, "trials at once (each uses --threads torch threads, 1 by default)")


def parse_args(argv: list[str]) -> tuple[SweepArgs, TrainConfig]:
    parser = argparse.ArgumentParser(prog="python -m supervised.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SweepArgs()
    kinds = {"cells": (str, "+", "NAME"), "seeds": (int, "+", "N"), "out": (str, None, "DIR"),
             "num_cpus": (int, None, "N"), "address": (str, None, "ADDR"), "max_concurrent": (int, None, "N")}
    for f in dataclasses.fields(SweepArgs):
        kind, nargs, metavar = kinds[f.name]
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, nargs=nargs, metavar=metavar,
                            default=getattr(defaults, f.name), help=f"{f.metadata['help']} (default: %(default)s)")
    known, rest = parser.parse_known_args(argv)
    args = SweepArgs(**vars(known))
    base = config_from_args(rest + ["--out", str(Path(args.out) / "trials" / "base")])
    base = dataclasses.replace(base, progress=False)
    if base.data_dir:  # trials run in their own working directories
        base.data_dir = str(Path(base.data_dir).resolve())
    from supervised.model import available_cells

    unknown = [c for c in args.cells if c not in available_cells()]
    if unknown:
        raise ConfigError(f"unknown cell(s) {', '.join(unknown)}; choose from: {', '.join(available_cells())}")
    if args.num_cpus < 1 or args.max_concurrent < 1:
        raise ConfigError("--num-cpus and --max-concurrent must be at least 1")
    resolve(base)  # fail on bad options here, not in every trial
    return args, base


def trial_config(base: TrainConfig, out: Path, cell: str, seed: int) -> TrainConfig:
    return dataclasses.replace(base, cell=cell, seed=seed, out=str(out / "trials" / f"{cell}-s{seed}"))


def run_sweep(args: SweepArgs, base: TrainConfig) -> list[dict[str, Any]]:
    import ray
    from ray import tune

    from supervised.train import train

    out = Path(args.out).resolve()

    def trainable(params: dict[str, Any]) -> None:
        cfg = trial_config(base, out, params["cell"], params["seed"])
        results = train(dataclasses.replace(cfg, resume=(Path(cfg.out) / "checkpoint.pt").exists()), report=tune.report)
        final = {f"{FINAL_PREFIX}{split}_{k}": v for split in ("val", "test") for k, v in results[split].items()}
        tune.report({**final, "step": results["steps"], "wall_time_s": results["wall_time_s_this_process"]})

    if not ray.is_initialized():
        if args.address:
            ray.init(address=args.address)
        else:
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": base.threads}),
        param_space={"cell": tune.grid_search(args.cells), "seed": tune.grid_search(args.seeds)},
        tune_config=tune.TuneConfig(max_concurrent_trials=args.max_concurrent),
        run_config=tune.RunConfig(storage_path=str(out / "ray"), name="tune", verbose=1),
    )
    grid = tuner.fit()
    trials = []
    for result in grid:
        if result.error is not None:
            raise RuntimeError(f"trial {result.config} failed: {result.error}")
        frame = result.metrics_dataframe
        history = [{k: v for k, v in row.items() if isinstance(v, (int, float)) and not math.isnan(v)}
                   for row in frame.to_dict("records") if not any(str(k).startswith(FINAL_PREFIX) and row[k] == row[k]
                                                                   for k in row)]
        trials.append({"cell": result.config["cell"], "seed": result.config["seed"],
                       "final": {k[len(FINAL_PREFIX):]: v for k, v in result.metrics.items() if k.startswith(FINAL_PREFIX)},
                       "steps": result.metrics["step"], "history": history})
    trials.sort(key=lambda t: (args.cells.index(t["cell"]), t["seed"]))
    return trials


def write_reports(trials: list[dict[str, Any]], out: str | Path, title: str) -> dict[str, Path]:
    """CSV of every trial, markdown table of mean ± std over seeds per cell, PNG of learning curves."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metric_names = sorted({k for t in trials for k in t["final"]})
    csv_path = out / "results.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cell", "seed", "steps", *metric_names])
        for t in trials:
            writer.writerow([t["cell"], t["seed"], t["steps"], *(t["final"].get(m, "") for m in metric_names)])
    cells = list(dict.fromkeys(t["cell"] for t in trials))
    lines = [f"| cell | seeds | {' | '.join(metric_names)} |", "|---|---|" + "---|" * len(metric_names)]
    for cell in cells:
        mine = [t for t in trials if t["cell"] == cell]
        lines.append(f"| {cell} | {len(mine)} | " + " | ".join(mean_std([t["final"].get(m) for t in mine])
                                                             for m in metric_names) + " |")
    md_path = out / "results.md"
    md_path.write_text(f"{title}\n\n" + "\n".join(lines) + "\n")
    keys = [k for k in ("train_loss", "val_loss", "val_accuracy", "val_perplexity")
            if any(k in row for t in trials for row in t["history"])]
    png_path = plot_learning_curves({cell: [t["history"] for t in trials if t["cell"] == cell] for cell in cells},
                                    keys, out / "curves.png", title)
    return {"csv": csv_path, "markdown": md_path, "png": png_path}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, base = parse_args(argv)
        trials = run_sweep(args, base)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    title = f"{base.task}: {' vs '.join(args.cells)}, seeds {args.seeds}, hidden {base.hidden_size}"
    paths = write_reports(trials, args.out, title)
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
