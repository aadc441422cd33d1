"""The trainer and the command line of supervised/: resume, seeds, logging, every task, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from supervised import fixtures
from supervised.cli import config_from_args, main
from supervised.config import ConfigError, TrainConfig, resolve
from supervised.tasks import build_task
from supervised.train import CHECKPOINT, METRICS, train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    fixtures.write_mnist(root / "mnist", train=40, test=10, gz=True)
    fixtures.write_cifar10(root / "cifar10", per_batch=6)
    fixtures.write_word_corpus(root / "wikitext")
    return root


TASK_DATA = {"smnist": "mnist", "pmnist": "mnist", "scifar": "cifar10", "wikitext103": "wikitext"}


def tiny(tmp_path: Path, data: Path, task: str, **overrides) -> TrainConfig:
    """A run that takes a second or two: tiny model, short sequences, few steps."""
    settings = dict(task=task, cell="ur-lstm", hidden_size=6, steps=6, batch_size=4, eval_batch_size=8,
                    seq_len=8, eval_seq_len=12, eval_size=8, val_size=8, bptt=5, eval_every=3, log_every=2,
                    checkpoint_every=3, gate_histograms_every=3, eval_batches=2, progress=False,
                    out=str(tmp_path / f"run-{task}"))
    if task in TASK_DATA:
        settings["data_dir"] = str(data / TASK_DATA[task])
    settings.update(overrides)
    return TrainConfig(**settings)


def parameters(out: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(out) / CHECKPOINT, weights_only=False)["model"]


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ------------------------------------------------------------------------------------ resume


@pytest.mark.parametrize("task", ["copy", "smnist", "wikitext103"])
def test_kill_and_resume_is_bit_identical(tmp_path, data, task):
    # 8 steps straight vs. killed after step 5 (last checkpoint at 4), then resumed to the end.
    # wikitext103 carries the recurrent state across batches; smnist crosses an epoch boundary.
    straight = tiny(tmp_path, data, task, steps=8, checkpoint_every=2, val_size=28, out=str(tmp_path / "straight"))
    split = tiny(tmp_path, data, task, steps=8, checkpoint_every=2, val_size=28, out=str(tmp_path / "split"))
    expected = train(straight)
    assert train(split, stop_after_step=5) is None
    assert torch.load(Path(split.out) / CHECKPOINT, weights_only=False)["step"] == 4
    resumed = train(TrainConfig(**{**split.__dict__, "resume": True}))
    assert_identical(parameters(straight.out), parameters(split.out))
    saved_a = torch.load(Path(straight.out) / CHECKPOINT, weights_only=False)
    saved_b = torch.load(Path(split.out) / CHECKPOINT, weights_only=False)
    for state_a, state_b in zip(saved_a["optimizer"]["state"].values(), saved_b["optimizer"]["state"].values()):
        assert torch.equal(state_a["exp_avg_sq"], state_b["exp_avg_sq"])
    assert resumed["history"] == expected["history"]
    assert resumed["test"] == expected["test"]
    if task == "smnist":
        assert build_task(resolve(straight)).steps_per_epoch < 8


def test_same_seed_same_run_other_seed_other_run(tmp_path, data):
    runs = [train(tiny(tmp_path, data, "adding", seed=seed, out=str(tmp_path / f"r{i}")))
            for i, seed in enumerate((3, 3, 4))]
    assert_identical(parameters(tmp_path / "r0"), parameters(tmp_path / "r1"))
    assert runs[0]["history"] == runs[1]["history"]
    assert not torch.equal(parameters(tmp_path / "r0")["head.weight"], parameters(tmp_path / "r2")["head.weight"])


def test_resume_refuses_other_settings_and_fresh_run_refuses_used_directory(tmp_path, data):
    cfg = tiny(tmp_path, data, "copy")
    train(cfg)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg)
    with pytest.raises(ConfigError, match="lr: checkpoint has 0.001, now 0.01"):
        train(TrainConfig(**{**cfg.__dict__, "resume": True, "lr": 0.01}))
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(TrainConfig(**{**cfg.__dict__, "resume": True, "out": str(tmp_path / "empty")}))


def test_checkpoint_write_is_atomic(tmp_path, data, monkeypatch):
    cfg = tiny(tmp_path, data, "copy", steps=4, checkpoint_every=2)
    import supervised.train as trainer

    real_save = torch.save
    calls = []

    def failing_second_save(obj, path):
        calls.append(Path(path))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed in the middle of writing the step-4 checkpoint
        real_save(obj, path)

    monkeypatch.setattr(trainer.torch, "save", failing_second_save)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert calls[0].name == CHECKPOINT + ".tmp"
    assert torch.load(Path(cfg.out) / CHECKPOINT, weights_only=False)["step"] == 2  # the old one survives


# ------------------------------------------------------------------------------------ logging


def test_tensorboard_scalars_and_gate_histograms(tmp_path, data):
    cfg = tiny(tmp_path, data, "copy")
    train(cfg)
    events = EventAccumulator(str(Path(cfg.out) / "tb"), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    scalars, histograms = set(events.Tags()["scalars"]), set(events.Tags()["histograms"])
    assert {"train/loss", "train/accuracy", "train/grad_norm", "train/lr", "val/loss", "val/accuracy"} <= scalars
    assert {"gates/f", "gates/r", "gates/g", "gates/timescale"} <= histograms
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6]
    timescales = events.Histograms("gates/timescale")[0].histogram_value
    assert timescales.min >= 1.0  # 1/(1-g) with g in (0, 1)


def test_wikitext_reports_perplexity(tmp_path, data):
    result = train(tiny(tmp_path, data, "wikitext103"))
    for split in ("val", "test"):
        assert result[split]["perplexity"] == pytest.approx(np.exp(result[split]["loss"]))
    assert result["vocabulary_size"] == len(set(fixtures.WORDS)) + 1  # + <eos>


def test_cosine_schedule_decays_to_zero(tmp_path, data):
    result = train(tiny(tmp_path, data, "adding", lr_schedule="cosine", log_every=1))
    lrs = [row["lr"] for row in result["history"] if "lr" in row]
    assert lrs[0] == pytest.approx(1e-3) and lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-4


# ------------------------------------------------------------------------------------ pMNIST


def test_pmnist_permutation_fixed_across_epochs_and_runs(tmp_path, data):
    cfg = resolve(tiny(tmp_path, data, "pmnist", val_size=0))
    task, again = build_task(cfg), build_task(cfg)
    assert np.array_equal(task.permutation, again.permutation)
    assert sorted(task.permutation) == list(range(784)) and not np.array_equal(task.permutation, np.arange(784))
    other = build_task(resolve(tiny(tmp_path, data, "pmnist", permutation_seed=5)))
    assert not np.array_equal(task.permutation, other.permutation)
    # The training seed changes the data order, never the permutation.
    assert np.array_equal(build_task(resolve(tiny(tmp_path, data, "pmnist", seed=9))).permutation, task.permutation)

    images = task.data["train"][0][:, :, 0].astype(np.float32) / 255
    by_content = {images[i, task.permutation].tobytes(): i for i in range(len(images))}
    seen = set()
    for step in range(2 * task.steps_per_epoch):  # two epochs: every image comes back permuted the same way
        x, _ = task.train_batch(step)
        for row in x[:, :, 0].numpy():
            assert row.tobytes() in by_content
            seen.add(by_content[row.tobytes()])
    assert len(seen) == len(images)

    result = train(cfg)
    assert result["permutation_seed"] == 0
    assert np.array_equal(np.load(Path(cfg.out) / "permutation.npy"), task.permutation)


# ------------------------------------------------------------------------------------ CLI


def cli_args(cfg: TrainConfig) -> list[str]:
    args = [cfg.task]
    for name, value in cfg.__dict__.items():
        if name in ("task",) or value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-")) if name != "resume" or value else None
        else:
            args += [flag, str(value)]
    return args


@pytest.mark.parametrize("task", ["copy", "adding", "smnist", "pmnist", "scifar", "wikitext103", "digits"])
def test_cli_runs_each_task(tmp_path, data, task, capsys):
    if task == "digits":
        pytest.importorskip("sklearn")
    cfg = tiny(tmp_path, data, task, steps=3, cell="lstm" if task == "scifar" else "ur-gru")
    main(cli_args(cfg))
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    metrics = json.loads((Path(cfg.out) / METRICS).read_text())
    assert summary["task"] == task and metrics["steps"] == 3
    assert np.isfinite(metrics["test"]["loss"])
    if task in ("copy", "adding"):
        assert summary["baseline_loss"]["test"] == metrics["test"]["baseline_loss"] > 0
    if task in ("smnist", "pmnist", "scifar", "digits"):
        assert 0 <= metrics["test"]["accuracy"] <= 1
    assert (Path(cfg.out) / CHECKPOINT).is_file() and any((Path(cfg.out) / "tb").iterdir())


@pytest.mark.parametrize("argv, words", [
    (["copy", "--cell", "no-such-cell"], "no-such-cell"),
    (["copy", "--hidden-size", "0"], "--hidden-size must be at least 1"),
    (["copy", "--lr-schedule", "sometimes"], "unknown --lr-schedule"),
    (["smnist"], "pass --data-dir"),
    (["smnist", "--data-dir", "/nonexistent/mnist"], "data directory does not exist"),
    (["--steps", "3"], "name a task"),
    (["copy", "--config", "/nonexistent.yaml"], "cannot read --config"),
])
def test_cli_user_errors_exit_nonzero_with_one_message(tmp_path, argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path / "run"), "--steps", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err


def test_cli_bad_yaml_options(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("task: copy\nhiden_size: 3\n")
    (tmp_path / "typed.yaml").write_text("task: copy\nhidden_size: lots\n")
    for name, words in (("bad.yaml", "unknown option(s) hiden_size"), ("typed.yaml", "hidden_size must be int")):
        with pytest.raises(SystemExit):
            main(["--config", str(tmp_path / name)])
        assert words in capsys.readouterr().err


def test_cli_subprocess_help_and_clean_error():
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    helped = subprocess.run([sys.executable, "-m", "supervised", "--help"], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=120)
    assert helped.returncode == 0
    for word in ("copy", "adding", "smnist", "pmnist", "scifar", "wikitext103", "digits",  # tasks
                 "ur-lstm", "ur-gru", "om-lstm",  # cells
                 "(default: 256)", "(default: 0.001)", "(default: 64)", "seq_len=500"):  # defaults
        assert word in helped.stdout, word
    failed = subprocess.run([sys.executable, "-m", "supervised", "copy", "--cell", "nope"], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=120)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("error:")


@pytest.mark.parametrize("name", ["copy", "adding", "smnist", "pmnist", "scifar", "wikitext103"])
def test_config_files_hold_the_paper_settings(name):
    path = ROOT / "configs" / "supervised" / f"{name}.yaml"
    cfg = resolve(config_from_args(["--config", str(path), "--data-dir", "x"]))
    assert cfg.task == name and cfg.hidden_size == 256 and cfg.num_layers == 1
    assert cfg.lr == 1e-3 and cfg.batch_size == 64
    expected = {"copy": (500, 1000), "adding": (200, 1000)}
    if name in expected:
        assert (cfg.seq_len, cfg.eval_seq_len) == expected[name]
    if name in ("smnist", "pmnist", "scifar"):
        assert cfg.epochs == 100
    assert set(yaml.safe_load(path.read_text())) <= set(cfg.__dict__)


def test_flags_override_config_file():
    cfg = config_from_args(["--config", str(ROOT / "configs/supervised/copy.yaml"), "--cell", "lstm", "--seq-len", "9"])
    assert (cfg.task, cfg.cell, cfg.seq_len, cfg.eval_seq_len) == ("copy", "lstm", 9, 1000)


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, data):
    # A real kill -9 from outside, at whatever moment the process happens to be in.
    cfg = tiny(tmp_path, data, "adding", steps=400, checkpoint_every=5, eval_every=100, log_every=10,
               gate_histograms_every=0, out=str(tmp_path / "killed"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "supervised", *cli_args(cfg)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (Path(cfg.out) / CHECKPOINT).exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere past the first checkpoint
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed: raise its steps"
    killed_at = torch.load(Path(cfg.out) / CHECKPOINT, weights_only=False)["step"]
    assert 5 <= killed_at < 400
    main(cli_args(cfg) + ["--resume"])
    train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "straight")}))
    assert_identical(parameters(cfg.out), parameters(tmp_path / "straight"))
