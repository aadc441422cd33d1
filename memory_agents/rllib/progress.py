"""What `rllib train` adds to a Tune run: a readable progress line, a fixed-column CSV,
checkpoints on a timer, and a Ctrl-C / SIGTERM that stops with a checkpoint and leaves
the run resumable.

All of it runs in the driver (Tune callbacks and a stopper), so it works the same for any
algorithm and on a cluster. The interrupt flag is a module global on purpose: Tune pickles
its callbacks and stopper into the experiment (``tuner.pkl``), and a resumed run gets those
copies back, which must still see the flag that this process's signal handler sets.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, TextIO

from ray import tune
from ray.tune.result import SHOULD_CHECKPOINT

from memory_agents.rllib.defaults import STOP_KEY

#: Set by the first SIGINT/SIGTERM: each running trial is checkpointed after its current
#: iteration; then the experiment is ended the way Tune ends it on its own interrupt
#: (SIGUSR1), which leaves the trials "unfinished", so `Tuner.restore` continues them.
_INTERRUPTED = threading.Event()
#: Trials that have started and not yet ended, and those saved since the interrupt.
_RUNNING: set = set()
_SAVED_AFTER_INTERRUPT: set = set()
_ENDING = threading.Event()

#: Our CSV in each trial folder. Tune's progress.csv fixes its header at the first row, so
#: evaluation columns (first reported at iteration 10) never appear there.
SUMMARY_CSV = "summary.csv"
SUMMARY_COLUMNS = [
    "training_iteration", "env_steps", "time_total_s", "env_steps_per_s", "train_success",
    "train_return_mean", "train_episode_len_mean", "eval_success", "eval_return_mean",
]


def interrupted() -> bool:
    return _INTERRUPTED.is_set()


@contextmanager
def stop_on_signals(out: TextIO = sys.stderr) -> Iterator[None]:
    """While inside: the first SIGINT/SIGTERM asks the run to stop with a checkpoint;
    a second SIGINT quits at once (KeyboardInterrupt). Handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        if _INTERRUPTED.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        _INTERRUPTED.set()
        name = signal.Signals(signum).name
        print(f"\n{name}: stopping after the current iteration and saving a checkpoint "
              f"(Ctrl-C again to quit without one)", file=out, flush=True)

    _INTERRUPTED.clear()
    _ENDING.clear()
    _RUNNING.clear()
    _SAVED_AFTER_INTERRUPT.clear()
    # Tune installs its own SIGINT handler (it stops without a trial checkpoint).
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class RunStopper(tune.Stopper):
    """Tune's dict stop (``{"training_iteration": 100}``, nested keys as ``a/b``) as a stopper
    object: it pickles with the experiment, so a resumed run stops where the first would."""

    def __init__(self, criteria: Optional[Dict[str, Any]] = None):
        self.criteria = dict(criteria or {})

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        for key, value in self.criteria.items():
            reached = _get(result, *key.split("/"))
            if not math.isnan(reached) and reached >= value:
                return True
        return False

    def stop_all(self) -> bool:
        return False


def _get(result: Dict[str, Any], *path: str) -> float:
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return math.nan
        result = result[key]
    try:
        return float(result)
    except (TypeError, ValueError):
        return math.nan


def env_steps(result: Dict[str, Any]) -> float:
    value = _get(result, STOP_KEY)
    return value if not math.isnan(value) else _get(result, "env_runners", STOP_KEY)


def evaluation_success(result: Dict[str, Any], iteration: int, interval: Optional[int]) -> float:
    """The greedy-evaluation success that `result` (of `iteration`) brings, NaN if none ran.

    RLlib attaches the last evaluation's results to every later result too: count an
    evaluation only at the iterations where one runs (every `interval`)."""
    if not interval or iteration % interval:
        return math.nan
    return _get(result, "evaluation", "env_runners", "success")


def _trial_dir(trial) -> Optional[Path]:
    """The trial's folder when the storage is a local one (remote storage: None)."""
    path = trial.path
    return Path(path) if path and os.path.isdir(path) else None


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _fmt(value: float, spec: str = ".2f") -> str:
    return "  -- " if math.isnan(value) else format(value, spec)


def trim_trial_files(trial_dir: Path, last_iteration: int) -> None:
    """Drops the rows after `last_iteration` from a trial's progress.csv, result.json and
    summary CSV, in place: a resumed trial continues from its checkpoint, and rows written
    after that checkpoint (before a crash) would otherwise appear twice.

    In place (same file, truncated), because Tune's loggers may already hold the files
    open for appending.
    """
    def keep_json(line: str) -> bool:
        try:
            return json.loads(line).get("training_iteration", 0) <= last_iteration
        except ValueError:
            return False

    for name in ("progress.csv", SUMMARY_CSV):
        path = trial_dir / name
        if not path.is_file():
            continue
        with open(path, "r+", newline="") as f:
            rows = list(csv.reader(f))
            if not rows or "training_iteration" not in rows[0]:
                continue
            col = rows[0].index("training_iteration")
            kept = [rows[0]] + [r for r in rows[1:] if len(r) > col and r[col] and float(r[col]) <= last_iteration]
            f.seek(0)
            csv.writer(f, lineterminator="\n").writerows(kept)
            f.truncate()
    path = trial_dir / "result.json"
    if path.is_file():
        with open(path, "r+") as f:
            lines = [line for line in f.read().splitlines() if line.strip() and keep_json(line)]
            f.seek(0)
            f.write("".join(line + "\n" for line in lines))
            f.truncate()


class ProgressCallback(tune.Callback):
    """One line per training iteration; a fixed-column `summary.csv` per trial; a checkpoint
    at least every `checkpoint_every_s` seconds of wall time.

    The line: iteration, env steps against the stop, training success (sampled actions),
    the latest greedy-evaluation success and the iteration it came from, env steps/s over
    the last iterations, elapsed time (all sessions of the trial) and time left.
    """

    def __init__(self, stop: Optional[Dict[str, Any]] = None, checkpoint_every_s: float = 300.0,
                 label: str = "", quiet: bool = False, out: Optional[TextIO] = None):
        self.stop = dict(stop or {})
        self.checkpoint_every_s = checkpoint_every_s
        self.label = label
        self.quiet = quiet
        self._out = out
        self._reset()

    def _reset(self) -> None:
        self._last_checkpoint: Dict[str, float] = {}
        self._last_eval: Dict[str, tuple] = {}
        self._recent: Dict[str, List[tuple]] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_out"] = None  # streams do not pickle; a resumed run prints to its own stdout
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    def print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    # --- trial life cycle -------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        _RUNNING.add(trial.trial_id)
        self._last_checkpoint[trial.trial_id] = time.monotonic()
        # Tune's loggers write into a local staging copy of the trial folder and upload it to
        # the storage folder now and then: trim both.
        folders = {Path(p) for p in (trial.local_path, trial.path) if p and os.path.isdir(p)}
        previous = trial.latest_checkpoint_result
        done = int(previous.metrics.get("training_iteration", 0)) if previous is not None else 0
        for folder in folders:
            # Restarted without a checkpoint (done = 0), a trial trains from iteration 1 again.
            trim_trial_files(folder, done)
        if previous is not None:
            self.print(f"{self._tag(trials, trial)}resuming from the checkpoint of iteration {done}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        _RUNNING.discard(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        _RUNNING.discard(trial.trial_id)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self._last_checkpoint[trial.trial_id] = time.monotonic()
        it = trial.last_result.get("training_iteration", "?")
        self.print(f"{self._tag(trials, trial)}checkpoint (iteration {it}): {checkpoint.path}")
        if _INTERRUPTED.is_set():
            _SAVED_AFTER_INTERRUPT.add(trial.trial_id)

    def on_step_begin(self, iteration, trials, **info):
        # Once every running trial has its post-interrupt checkpoint, end the experiment
        # through Tune's own interrupt (its SIGUSR1 handler): it saves the experiment state
        # with those trials unfinished, so --resume continues them.
        if _INTERRUPTED.is_set() and not _ENDING.is_set() and _RUNNING <= _SAVED_AFTER_INTERRUPT:
            _ENDING.set()
            os.kill(os.getpid(), signal.SIGUSR1)

    # --- results ----------------------------------------------------------------------
    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = trial.trial_id
        due = time.monotonic() - self._last_checkpoint.get(tid, time.monotonic()) >= self.checkpoint_every_s
        if due or (_INTERRUPTED.is_set() and tid not in _SAVED_AFTER_INTERRUPT):
            result[SHOULD_CHECKPOINT] = True  # Tune saves this trial after this result
        it = int(result.get("training_iteration", 0))
        steps = env_steps(result)
        total_s = _get(result, "time_total_s")
        recent = self._recent.setdefault(tid, [])
        recent.append((time.monotonic(), steps))
        del recent[:-10]
        if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            rate = (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])
        else:
            rate = _get(result, "num_env_steps_sampled_lifetime_throughput")
            if math.isnan(rate):
                rate = _get(result, "env_runners", "num_env_steps_sampled") / max(_get(result, "time_this_iter_s"), 1e-9)
        interval = (trial.config or {}).get("evaluation_interval") or 0
        evaluated = bool(interval) and it % interval == 0
        eval_success = evaluation_success(result, it, interval)
        if not math.isnan(eval_success):
            self._last_eval[tid] = (eval_success, it)
        train_success = _get(result, "env_runners", "success")
        row = {
            "training_iteration": it, "env_steps": steps, "time_total_s": total_s,
            "env_steps_per_s": rate, "train_success": train_success,
            "train_return_mean": _get(result, "env_runners", "episode_return_mean"),
            "train_episode_len_mean": _get(result, "env_runners", "episode_len_mean"),
            "eval_success": eval_success,
            "eval_return_mean": (_get(result, "evaluation", "env_runners", "episode_return_mean")
                                 if evaluated else math.nan),
        }
        if _trial_dir(trial):
            self._append_summary(_trial_dir(trial) / SUMMARY_CSV, row)
        self.print(self.line(trials, trial, row))

    def _append_summary(self, path: Path, row: Dict[str, Any]) -> None:
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, SUMMARY_COLUMNS, lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})

    def _tag(self, trials, trial) -> str:
        return f"[{trial.trial_id}] " if len(trials) > 1 else ""

    def line(self, trials, trial, row: Dict[str, Any]) -> str:
        it, steps, rate = row["training_iteration"], row["env_steps"], row["env_steps_per_s"]
        parts = [f"{self._tag(trials, trial)}it {it:4d}"]
        stop_steps = self.stop.get(STOP_KEY)
        stop_iters = self.stop.get("training_iteration")
        left = math.nan
        if stop_steps and not math.isnan(steps):
            parts.append(f"steps {int(steps):,}/{int(stop_steps):,} ({100 * steps / stop_steps:.0f}%)")
            left = (stop_steps - steps) / rate if rate > 0 else math.nan
        else:
            parts.append(f"steps {int(steps):,}" if not math.isnan(steps) else "steps --")
        if stop_iters:
            parts[0] += f"/{int(stop_iters)}"
            per_it = row["time_total_s"] / max(it, 1)
            left = min(left, (stop_iters - it) * per_it) if not math.isnan(left) else (stop_iters - it) * per_it
        parts.append(f"success {_fmt(row['train_success'])}")
        last_eval = self._last_eval.get(trial.trial_id)
        parts.append(f"eval {last_eval[0]:.2f} (it {last_eval[1]})" if last_eval else "eval   --")
        parts.append(f"{rate:,.0f} steps/s" if not math.isnan(rate) else "-- steps/s")
        parts.append(f"{_clock(row['time_total_s'])} elapsed, ETA {_clock(left)}")
        if self.label:
            parts.append(self.label)
        return " | ".join(parts)
