"""`rllib train` runs that are killed or interrupted: checkpoints by default, --resume.

Real runs of the command in a subprocess (its own process group, as a terminal would run
it), with a tiny agent and iterations of at least one second so the signals land mid-run.
About a minute in all.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RLLIB = Path(sys.executable).with_name("rllib")
TINY_ENV = {
    "MEMORY_AGENTS_NUM_ENVS": "2",
    "MEMORY_AGENTS_HIDDEN": "16",
    "MEMORY_AGENTS_DELAY": "5",
    "MEMORY_AGENTS_EVAL_INTERVAL": "2",
    "OMP_NUM_THREADS": "1",
    # Upload Tune's logs every second (default 10 s), so they are current when the test kills.
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
}
TINY_CONFIG = json.dumps({"train_batch_size_per_learner": 140, "minibatch_size": 70, "num_epochs": 1,
                          "min_time_s_per_iteration": 1})


def start(*args, storage):
    return subprocess.Popen(
        [str(RLLIB), "train", "file", "ppo_passive_match_ur_lstm", "--config", TINY_CONFIG,
         "--storage-path", str(storage), *args],
        cwd=REPO, env={**os.environ, **TINY_ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )


def wait_for(condition, proc, timeout=240, output=None):
    """`output`: where a reader thread collects the run's lines (then stdout is already drained)."""
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            time.sleep(0.5)  # let a reader thread take the last lines
            text = "".join(output) if output is not None else proc.stdout.read()
            raise AssertionError(f"run ended early (exit {proc.returncode}):\n{text[-5000:]}")
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("timed out")
        time.sleep(0.1)


def iterations(path: Path):
    with open(path, newline="") as f:
        return [int(float(row["training_iteration"])) for row in csv.DictReader(f)]


def test_kill_9_then_resume_ends_at_the_stop_with_earlier_rows_kept(tmp_path):
    stop = ["--stop", '{"training_iteration": 8}', "--checkpoint-freq", "2"]
    proc = start(*stop, storage=tmp_path)
    def two_checkpoints_saved():
        # Checkpoint folders appear first; Tune then uploads the logs (progress.csv).
        logs = list(tmp_path.glob("*/*/progress.csv"))
        return len(list(tmp_path.glob("*/*/checkpoint_*"))) >= 2 and logs and len(iterations(logs[0])) >= 3

    wait_for(two_checkpoints_saved, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process of the run
    proc.wait(timeout=30)
    (trial,) = tmp_path.glob("*/*PPO_ur-lstm_*")  # OverlapPPO_... with the shipped defaults
    before = iterations(trial / "progress.csv")
    assert before and before == list(range(1, len(before) + 1)) and before[-1] < 8

    resumed = subprocess.run(
        [str(RLLIB), "train", "file", "ppo_passive_match_ur_lstm", "--config", TINY_CONFIG,
         "--storage-path", str(tmp_path), *stop, "--resume"],
        cwd=REPO, env={**os.environ, **TINY_ENV}, capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming from the checkpoint of iteration" in resumed.stdout
    # Ends at the same stop; every iteration once, the first run's rows kept.
    assert iterations(trial / "progress.csv") == list(range(1, 9))
    assert iterations(trial / "summary.csv") == list(range(1, 9))
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in results] == list(range(1, 9))
    # Steps continue from the checkpoint instead of restarting at zero.
    steps = [r["num_env_steps_sampled_lifetime"] for r in results]
    assert steps == sorted(steps)

    again = subprocess.run(
        [str(RLLIB), "train", "file", "ppo_passive_match_ur_lstm", "--storage-path", str(tmp_path),
         "--resume"], cwd=REPO, env={**os.environ, **TINY_ENV}, capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0 and "nothing left to train" in again.stdout


def test_ctrl_c_saves_a_checkpoint_that_evaluates_and_resumes(tmp_path):
    # Default checkpoint settings (every 20 iterations / 5 minutes): only the Ctrl-C saves.
    stop = ["--stop", '{"training_iteration": 6}']
    proc = start(*stop, storage=tmp_path)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    wait_for(lambda: sum(line.startswith("it ") for line in lines) >= 3, proc, output=lines)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    proc.wait(timeout=120)
    reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode == 130, out
    assert "SIGINT: stopping after the current iteration and saving a checkpoint" in out
    assert "run the same command with --resume" in out
    (checkpoint,) = tmp_path.glob("*/*/checkpoint_*")
    trial = checkpoint.parent
    done = iterations(trial / "summary.csv")
    assert done == list(range(1, len(done) + 1)) and 3 <= done[-1] < 6

    evaluated = subprocess.run([str(RLLIB), "evaluate", str(trial.parent), "--episodes", "2"],
                               cwd=REPO, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "episodes: 2" in evaluated.stdout and "success rate:" in evaluated.stdout

    # The interrupted trial is left unfinished, so --resume continues it to the stop.
    resumed = subprocess.run(
        [str(RLLIB), "train", "file", "ppo_passive_match_ur_lstm", "--config", TINY_CONFIG,
         "--storage-path", str(tmp_path), *stop, "--resume"],
        cwd=REPO, env={**os.environ, **TINY_ENV}, capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resuming from the checkpoint of iteration {done[-1]}" in resumed.stdout
    assert iterations(trial / "progress.csv") == list(range(1, 7))
