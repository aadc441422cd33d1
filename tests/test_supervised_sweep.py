"""The Ray Tune sweep of supervised/: argument handling, reports; a real sweep is marked slow."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from supervised.config import ConfigError, TrainConfig
from supervised.sweep import main, parse_args, plan_trials, trial_order, write_reports
from supervised.train import CHECKPOINT, METRICS, train

ROOT = Path(__file__).resolve().parents[1]


def fake_trial(cell: str, seed: int, loss: float) -> dict:
    history = [{"step": s, "train_loss": loss * 10 / s, "val_loss": loss * 12 / s} for s in (1, 2, 5, 10)]
    return {"cell": cell, "seed": seed, "steps": 10, "final": {"test_loss": loss, "val_loss": loss + 0.01},
            "history": history}


def test_reports_csv_table_and_png(tmp_path):
    trials = [fake_trial("ur-lstm", 0, 0.1), fake_trial("ur-lstm", 1, 0.3), fake_trial("lstm", 0, 0.5)]
    paths = write_reports(trials, tmp_path, "adding")
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [(r["cell"], r["seed"], float(r["test_loss"])) for r in rows] == [("ur-lstm", "0", 0.1), ("ur-lstm", "1", 0.3),
                                                                              ("lstm", "0", 0.5)]
    table = paths["markdown"].read_text()
    assert "| ur-lstm | 2 | 0.2 ± 0.1 | 0.21 ± 0.1 |" in table  # mean ± population std over seeds
    assert "| lstm | 1 | 0.5 | 0.51 |" in table
    assert paths["png"].stat().st_size > 10_000 and paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_parse_args_splits_sweep_and_run_options(tmp_path):
    args, base = parse_args(["adding", "--cells", "ur-gru", "gru", "--seeds", "4", "5", "--out", str(tmp_path),
                             "--steps", "7", "--hidden-size", "9"])
    assert args.cells == ["ur-gru", "gru"] and args.seeds == [4, 5]
    assert (base.task, base.steps, base.hidden_size, base.progress) == ("adding", 7, 9, False)


@pytest.mark.parametrize("argv, words", [
    (["adding", "--cells", "ur-lstm", "bogus"], "unknown cell 'bogus'"),
    (["adding", "--hidden-size", "0"], "--hidden-size must be at least 1"),
    (["smnist"], "pass --data-dir"),
])
def test_sweep_user_errors(tmp_path, argv, words, capsys):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_args(argv + ["--out", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path)])
    assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_trials_run_seed_by_seed():
    assert trial_order(["a", "b", "c"], [0, 1]) == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1)]


TINY_RUN = ["--hidden-size", "8", "--seq-len", "10", "--eval-seq-len", "20", "--eval-size", "16", "--log-every", "50",
            "--eval-every", "500", "--gate-histograms-every", "0"]


def test_resume_refuses_other_settings_and_fresh_sweep_refuses_used_directory(tmp_path):
    argv = ["adding", "--cells", "lstm", "--seeds", "0", "--out", str(tmp_path), "--steps", "4", *TINY_RUN]
    args, base = parse_args(argv)
    train(TrainConfig(**{**base.__dict__, "cell": "lstm", "seed": 0, "out": str(tmp_path / "trials" / "lstm-s0")}))
    with pytest.raises(ConfigError, match="already holds trials"):
        plan_trials(args, base)
    done, todo = plan_trials(*parse_args(argv + ["--resume"]))
    assert [(r["cell"], r["seed"], r["steps"]) for r in done] == [("lstm", 0, 4)] and todo == []
    with pytest.raises(ConfigError, match="other settings: steps: checkpoint has 4, now 5"):
        plan_trials(*parse_args(argv[:-len(TINY_RUN) - 1] + ["5", *TINY_RUN, "--resume"]))


def _session_processes(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # the session id, after state, ppid, pgrp
            pids.append(int(stat.parent.name))
    return pids


def start_sweep(out: Path, steps: int, stderr=subprocess.DEVNULL) -> tuple[list[str], dict, subprocess.Popen]:
    """A real two-trial sweep (ur-lstm then lstm, one at a time) in its own session: (argv, env, process)."""
    argv = [sys.executable, "-m", "supervised.sweep", "adding", "--cells", "ur-lstm", "lstm", "--seeds", "0",
            "--out", str(out), "--num-cpus", "1", "--max-concurrent", "1", "--steps", str(steps),
            "--checkpoint-every", "10", *TINY_RUN]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"}
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                               start_new_session=True)
    return argv, env, process


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)


def test_sigkill_of_the_whole_sweep_then_resume(tmp_path):
    # A real sweep (local Ray, one trial at a time) killed with SIGKILL, process group and all, while its
    # second trial is midway; --resume must keep the first trial as it was and continue the second from
    # its checkpoint to the bit-identical end. About 30 s, most of it Ray starting twice.
    out = tmp_path / "sweep"
    first, second = out / "trials" / "ur-lstm-s0", out / "trials" / "lstm-s0"
    argv, env, process = start_sweep(out, steps=500)
    try:
        wait_for(second / CHECKPOINT, process)
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL, "the sweep ended before it could be killed: raise --steps"
    finally:
        deadline = time.time() + 30  # Ray's daemons and workers die with the sweep (fate sharing)
        while (left := _session_processes(process.pid)) and time.time() < deadline:
            time.sleep(0.2)
        for pid in left:  # should there be any: ours, by pid
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the killed sweep outlived it: {left}"
    killed_at = torch.load(second / CHECKPOINT, weights_only=False)["step"]
    assert 10 <= killed_at < 500 and not (second / METRICS).exists()
    kept = (first / METRICS).read_bytes(), (first / METRICS).stat().st_mtime_ns

    resumed = subprocess.run(argv + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume: 1 finished trial(s) kept, 1 to run" in resumed.stderr
    assert ((first / METRICS).read_bytes(), (first / METRICS).stat().st_mtime_ns) == kept  # not rerun
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["cell"], r["seed"], r["steps"]) for r in rows] == [("ur-lstm", "0", "500"), ("lstm", "0", "500")]
    # The interrupted trial went on from its checkpoint: same parameters as a run never interrupted.
    config = json.loads((second / METRICS).read_text())["config"]
    straight = train(TrainConfig(**{**config, "resume": False, "out": str(tmp_path / "straight")}))
    saved = torch.load(second / CHECKPOINT, weights_only=False)["model"]
    reference = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=False)["model"]
    assert all(torch.equal(saved[k], reference[k]) for k in reference)
    assert float(rows[1]["test_loss"]) == straight["test"]["loss"]


def test_collect_records_names_the_unfinished_trials_and_raises_on_a_failed_one(tmp_path):
    from types import SimpleNamespace

    from supervised.sweep import RECORD_KEY, SweepInterrupted, collect_records

    done = SimpleNamespace(error=None, config={"trial": "ur-lstm-s0"}, metrics={RECORD_KEY: json.dumps({"steps": 5})})
    stopped = SimpleNamespace(error=None, config={"trial": "lstm-s0"}, metrics={"step": 3})
    names = ["ur-lstm-s0", "lstm-s0", "lstm-s1"]
    assert collect_records([done], names[:1], tmp_path) == {"ur-lstm-s0": {"steps": 5}}
    with pytest.raises(SweepInterrupted) as info:  # lstm-s1 stopped before Tune created it: no result at all
        collect_records([done, stopped], names, tmp_path)
    assert info.value.unfinished == ["lstm-s0", "lstm-s1"]
    assert str(info.value) == (f"interrupted: 2 trial(s) unfinished (lstm-s0, lstm-s1); their checkpoints in {tmp_path} "
                               "are kept, so the same command with --resume continues them")
    failed = SimpleNamespace(error=ValueError("nan loss"), config={"trial": "gru-s0"}, metrics={})
    with pytest.raises(RuntimeError, match="trial gru-s0 failed: nan loss"):
        collect_records([done, failed], names, tmp_path)


def test_ctrl_c_stops_the_sweep_with_a_message_not_a_traceback(tmp_path):
    # Ctrl-C reaches the terminal's whole process group; Tune stops its trials and returns. The sweep
    # must then say which trials are unfinished and how to continue, and exit 130. About 20 s.
    out = tmp_path / "sweep"
    _, _, process = start_sweep(out, steps=2000, stderr=subprocess.PIPE)
    try:
        wait_for(out / "trials" / "ur-lstm-s0" / CHECKPOINT, process)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "interrupted: 2 trial(s) unfinished (ur-lstm-s0, lstm-s0)" in stderr
    assert "--resume continues them" in stderr
    assert (out / "trials" / "ur-lstm-s0" / CHECKPOINT).exists() and not (out / "results.csv").exists()


@pytest.mark.slow
def test_ray_tune_sweep_end_to_end(tmp_path):
    # Starts a local Ray instance: about a minute on an idle 2-core machine.
    main(["adding", "--cells", "ur-lstm", "lstm", "--seeds", "0", "1", "--out", str(tmp_path), "--num-cpus", "2",
          "--steps", "6", "--hidden-size", "8", "--seq-len", "10", "--eval-seq-len", "20", "--eval-size", "16",
          "--log-every", "2", "--eval-every", "3", "--gate-histograms-every", "0"])
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert sorted((r["cell"], r["seed"]) for r in rows) == [("lstm", "0"), ("lstm", "1"), ("ur-lstm", "0"), ("ur-lstm", "1")]
    assert all(float(r["test_loss"]) > 0 and r["steps"] == "6" for r in rows)
    assert "| ur-lstm | 2 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert all((Path(tmp_path) / "trials" / f"{c}-s{s}" / "metrics.json").is_file() for c in ("lstm", "ur-lstm") for s in (0, 1))


def test_a_second_sweep_on_the_same_directory_is_refused(tmp_path):
    from supervised.sweep import hold_lock

    with hold_lock(tmp_path, "sweep directory"):
        with pytest.raises(ConfigError, match=f"sweep directory {tmp_path} is in use by another process \\(pid {os.getpid()}\\)"):
            with hold_lock(tmp_path, "sweep directory"):
                pass
    with hold_lock(tmp_path, "sweep directory"):  # released on exit
        pass
