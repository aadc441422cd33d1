"""Sweep cells x seeds of one supervised experiment through Ray Tune.

    python -m supervised.sweep adding --cells ur-lstm lstm --seeds 0 1 2 --out runs/sweep-adding \\
        --steps 2000 --hidden-size 128

Every option after the sweep's own (``--cells``, ``--seeds``, ``--out``, ``--num-cpus``,
``--address``, ``--max-concurrent``, ``--resume``) is a ``python -m supervised`` option (``--config``
too) and fixes the base run (see ``python -m supervised --help``). Each trial is one
``supervised.train.train`` call in ``--out/trials/<cell>-s<seed>``, reporting its history rows to
Tune; the results are read back from Tune's ResultGrid, so the same command spreads over a Ray
cluster (``--address auto``) unchanged. Trials start seed by seed (seed 0 of every cell, then seed
1, ...), so a partial sweep is balanced across cells.

Resume: the trial directories are the sweep's only state. Re-running the same command with
``--resume`` after any interruption (Ctrl-C, ``kill -9`` of the whole process group, a reboot)
reads the finished trials back from their ``metrics.json`` without running them, continues the
unfinished ones from their own ``checkpoint.pt`` (bit-identical to an uninterrupted trial) and
starts the rest; a changed run setting is refused. Without ``--resume`` a sweep refuses an
``--out`` that already holds trials. Writes to ``--out``:

* ``results.csv``: one row per trial (cell, seed, final val/test metrics)
* ``results.md``: mean ± std over seeds per cell
* ``curves.png``: learning curves per cell (mean ± std over seeds)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from supervised.cli import config_from_args
from supervised.config import ConfigError, TrainConfig, resolve, resume_mismatches
from supervised.plots import mean_std, plot_learning_curves
from supervised.readers import DataError

RECORD_KEY = "trial_record"  # Tune key of a trial's last report: its record (see trial_record) as JSON
LOCK = ".lock"  # flock'ed while a sweep (in --out) or a trial (in its directory) runs


class SweepInterrupted(Exception):
    """The sweep stopped (Ctrl-C, SIGTERM) before these trials finished; their checkpoints are kept."""

    def __init__(self, unfinished: list[str], out: str | Path):
        self.unfinished, self.out = unfinished, out
        super().__init__(f"interrupted: {len(unfinished)} trial(s) unfinished ({', '.join(unfinished)}); their "
                         f"checkpoints in {out} are kept, so the same command with --resume continues them")


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
    resume: bool = _arg(False, "continue the sweep in --out: keep finished trials, resume unfinished ones from their checkpoints")


def parse_args(argv: list[str]) -> tuple[SweepArgs, TrainConfig]:
    parser = argparse.ArgumentParser(prog="python -m supervised.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SweepArgs()
    kinds = {"cells": (str, "+", "NAME"), "seeds": (int, "+", "N"), "out": (str, None, "DIR"),
             "num_cpus": (int, None, "N"), "address": (str, None, "ADDR"), "max_concurrent": (int, None, "N")}
    for f in dataclasses.fields(SweepArgs):
        flag, help_text = "--" + f.name.replace("_", "-"), f.metadata["help"]
        if f.type == "bool":
            parser.add_argument(flag, action="store_true", help=help_text)
            continue
        kind, nargs, metavar = kinds[f.name]
        parser.add_argument(flag, type=kind, nargs=nargs, metavar=metavar,
                            default=getattr(defaults, f.name), help=f"{help_text} (default: %(default)s)")
    known, rest = parser.parse_known_args(argv)
    args = SweepArgs(**vars(known))
    check_sweep(args)
    return args, sweep_base(config_from_args(rest), args.out)


def check_sweep(args: SweepArgs) -> None:
    from memory_agents.cells.config import check_cell_name

    for cell in args.cells:
        try:
            check_cell_name(cell)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if len(set(args.cells)) < len(args.cells) or len(set(args.seeds)) < len(args.seeds):
        raise ConfigError("--cells and --seeds must not repeat a value")
    for name in ("max_concurrent", "num_cpus"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")


def sweep_base(cfg: TrainConfig, out: str | Path) -> TrainConfig:
    """The run every trial starts from (cell, seed and run directory are the trial's); checked here,
    so that a bad option fails before Ray starts rather than in every trial."""
    base = dataclasses.replace(cfg, out=str(Path(out) / "trials" / "base"), progress=False)
    if base.data_dir:  # trials run in their own working directories
        base.data_dir = str(Path(base.data_dir).resolve())
    resolve(base)
    return base


def trial_name(cell: str, seed: int) -> str:
    return f"{cell}-s{seed}"


def trial_config(base: TrainConfig, out: Path, cell: str, seed: int) -> TrainConfig:
    return dataclasses.replace(base, cell=cell, seed=seed, out=str(Path(out) / "trials" / trial_name(cell, seed)))


def trial_order(cells: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """Seed-major: every cell's seed 0, then every cell's seed 1, ... (a partial sweep stays balanced)."""
    return [(cell, seed) for seed in seeds for cell in cells]


def trial_record(results: dict[str, Any]) -> dict[str, Any]:
    """What the sweep keeps of a finished trial, from ``train``'s results (or its ``metrics.json``)."""
    return {"cell": results["cell"], "seed": results["seed"], "steps": results["steps"],
            "primary_metric": results["primary_metric"],
            "final": {f"{split}_{k}": v for split in ("val", "test") for k, v in results[split].items()},
            "history": results["history"], "wall_time_s": results["wall_time_s_this_process"],
            "config": results["config"]}


def finished_record(cfg: TrainConfig) -> dict[str, Any] | None:
    """The record of a trial whose ``metrics.json`` is complete; None if it has not finished.

    ``metrics.json`` is written (atomically) only after the final evaluation, so it marks a finished
    trial; one made with other run settings is refused rather than silently mixed in.
    """
    from supervised.train import METRICS

    path = Path(cfg.out) / METRICS
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:  # cut short by a kill (written before writes were atomic): run its end again
        return None
    mismatches = resume_mismatches(results["config"], resolve(cfg))
    if mismatches:
        raise ConfigError(f"--resume: finished trial {path.parent} has other settings: " + "; ".join(mismatches))
    return trial_record(results)


def plan_trials(args: SweepArgs, base: TrainConfig) -> tuple[list[dict[str, Any]], list[tuple[str, int]]]:
    """(records of finished trials, (cell, seed) of those still to run), in trial order."""
    out = Path(args.out).resolve()
    done, todo = [], []
    for cell, seed in trial_order(args.cells, args.seeds):
        cfg = trial_config(base, out, cell, seed)
        if not args.resume:
            if Path(cfg.out).exists() and any(Path(cfg.out).iterdir()):
                raise ConfigError(f"{out} already holds trials ({cfg.out}): pass --resume to continue that sweep "
                                  "or choose another --out")
            todo.append((cell, seed))
        elif (record := finished_record(cfg)) is not None:
            done.append(record)
        else:
            todo.append((cell, seed))
    return done, todo


@contextmanager
def hold_lock(directory: str | Path, what: str) -> Iterator[None]:
    """An exclusive flock on ``directory/.lock``: the kernel drops it when its process dies, even by kill -9."""
    path = Path(directory) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ConfigError(f"{what} {directory} is in use by another process (pid {f.read().strip() or '?'})") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield


def init_local_ray(args: SweepArgs) -> None:
    from memory_agents.ray_init import init_ray

    # The one Ray start-up of the package; trials print nothing the console needs (their
    # results come back through Tune), so their output stays in Ray's log files.
    init_ray(args.address, num_cpus=args.num_cpus, torch_threads=1, log_to_driver=False)


def run_sweep(args: SweepArgs, base: TrainConfig,
              on_trial_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run (or, with ``args.resume``, continue) the sweep; returns one record per trial, in trial order.

    ``on_trial_done`` receives each trial's record as it finishes (the replication grid rewrites
    its results on it).
    """
    out = Path(args.out).resolve()
    with hold_lock(out, "sweep directory"):
        done, todo = plan_trials(args, base)
        if done:
            print(f"resume: {len(done)} finished trial(s) kept, {len(todo)} to run", file=sys.stderr)
        records = {trial_name(r["cell"], r["seed"]): r for r in done}
        if todo:
            records.update(_run_trials(args, base, out, todo, on_trial_done))
    return [records[trial_name(cell, seed)] for cell, seed in trial_order(args.cells, args.seeds)]


def _run_trials(args: SweepArgs, base: TrainConfig, out: Path, todo: list[tuple[str, int]],
                on_trial_done: Callable[[dict[str, Any]], None] | None) -> dict[str, dict[str, Any]]:
    from ray import tune

    from supervised.train import CHECKPOINT, train

    trials = {trial_name(cell, seed): (cell, seed) for cell, seed in todo}

    def trainable(params: dict[str, Any]) -> None:
        cfg = trial_config(base, out, *trials[params["trial"]])
        with hold_lock(cfg.out, "trial directory"):
            resume = (Path(cfg.out) / CHECKPOINT).exists()
            results = train(dataclasses.replace(cfg, resume=resume), report=tune.report)
        tune.report({RECORD_KEY: json.dumps(trial_record(results)), "step": results["steps"]})

    class TrialDone(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            if on_trial_done is not None and RECORD_KEY in (trial.last_result or {}):
                on_trial_done(json.loads(trial.last_result[RECORD_KEY]))

    init_local_ray(args)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": base.threads}),
        # One grid axis over the trial names keeps their (seed-major) order: Tune starts them in it.
        param_space={"trial": tune.grid_search(list(trials))},
        tune_config=tune.TuneConfig(max_concurrent_trials=args.max_concurrent),
        # A new Tune experiment per invocation: the trial directories, not Tune's state, are what resume reads.
        run_config=tune.RunConfig(storage_path=str(out / "ray"), name=time.strftime("tune-%Y%m%d-%H%M%S"),
                                  verbose=1, callbacks=[TrialDone()]),
    )
    return collect_records(tuner.fit(), list(trials), out)


def collect_records(results: Iterable[Any], trials: list[str], out: str | Path) -> dict[str, dict[str, Any]]:
    """Each finished trial's record from Tune's results; raises SweepInterrupted if any of ``trials`` did not finish.

    Tune answers Ctrl-C by stopping its trials and returning the results of those it had started,
    without the record that a trial reports only once it has finished.
    """
    records = {}
    for result in results:
        if result.error is not None:
            raise RuntimeError(f"trial {result.config['trial']} failed: {result.error}")
        if RECORD_KEY in (result.metrics or {}):
            records[result.config["trial"]] = json.loads(result.metrics[RECORD_KEY])
    if unfinished := [name for name in trials if name not in records]:
        raise SweepInterrupted(unfinished, out)
    return records


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
    except SweepInterrupted as e:
        print(e, file=sys.stderr)
        sys.exit(130)
    title = f"{base.task}: {' vs '.join(args.cells)}, seeds {args.seeds}, hidden {base.hidden_size}"
    paths = write_reports(trials, args.out, title)
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
