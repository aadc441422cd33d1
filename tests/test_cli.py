"""The `rllib` command line: a real train -> checkpoint -> evaluate round trip, and errors.

    .venv/bin/python -m pytest tests/test_cli.py -q      (about a minute: starts Ray once)
"""

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from memory_agents.cli import main

REPO = Path(__file__).resolve().parents[1]
RLLIB = Path(sys.executable).with_name("rllib")
CONFIG = "configs/ppo_passive_match_ur_lstm.py"
# Tiny, fast settings through the documented knobs (env vars + --config JSON).
TINY_ENV = {
    "MEMORY_AGENTS_NUM_ENVS": "2",
    "MEMORY_AGENTS_HIDDEN": "16",
    "MEMORY_AGENTS_DELAY": "5",
    "MEMORY_AGENTS_EVAL_INTERVAL": "0",
}
TINY_CONFIG = '{"train_batch_size_per_learner": 140, "minibatch_size": 70, "num_epochs": 1}'


def run_cli(*args, env=None, timeout=300):
    return subprocess.run(
        [str(RLLIB), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **TINY_ENV, **(env or {})},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    storage = tmp_path_factory.mktemp("ray_results")
    proc = run_cli(
        "train", "file", CONFIG, "--stop", '{"training_iteration": 1}', "--config", TINY_CONFIG,
        "--storage-path", str(storage), "--experiment-name", "smoke",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / "smoke", proc


def test_train_file_leaves_checkpoint_and_tensorboard_events(trained):
    experiment, proc = trained
    trials = [p for p in experiment.iterdir() if p.is_dir()]
    assert len(trials) == 1
    trial = trials[0]
    assert list(trial.glob("events.out.tfevents.*")), "no TensorBoard event file"
    assert (trial / "progress.csv").is_file()
    checkpoints = list(trial.glob("checkpoint_*"))
    assert checkpoints and (
        checkpoints[0] / "learner_group/learner/rl_module/default_policy/module_state.pkl"
    ).is_file()
    # The command-line --stop won over the file's stop (1 iteration, not millions of steps).
    progress = (trial / "progress.csv").read_text().strip().splitlines()
    assert len(progress) == 2  # header + one iteration
    assert "checkpoint:" in proc.stdout


def test_evaluate_prints_success_rate(trained, tmp_path):
    experiment, _ = trained
    strip = tmp_path / "strip.png"
    proc = run_cli("evaluate", str(experiment), "--episodes", "3", "--png", str(strip))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "episodes: 3" in proc.stdout
    assert "success rate: " in proc.stdout and "95% CI" in proc.stdout
    assert strip.is_file() and strip.stat().st_size > 0


def test_evaluate_takes_a_relative_path(trained):
    # RLlib's from_checkpoint wants an absolute path (a URI); users type relative ones.
    experiment, _ = trained
    trial = next(p for p in experiment.iterdir() if p.is_dir())
    assert main(["evaluate", os.path.relpath(trial), "--episodes", "1"]) == 0


def test_python_m_is_the_same_program():
    proc = subprocess.run(
        [sys.executable, "-m", "memory_agents.cli", "train", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0
    for option in ("--checkpoint-freq", "--checkpoint-at-end", "--storage-path",
                   "--experiment-name", "--num-samples", "--ray-address", "--stop", "--config"):
        assert option in proc.stdout


def test_unknown_cell_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("MEMORY_AGENTS_CELL", "ur-lstmm")
    code = main(["train", "file", str(REPO / CONFIG), "--stop", '{"training_iteration": 1}'])
    err = capsys.readouterr().err
    assert code == 2
    assert "Unknown cell 'ur-lstmm'" in err and "ur-lstm" in err


def test_unregistered_env_is_a_clear_error(capsys):
    code = main(["train", "--env", "memory_agents/NoSuchTask-v0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'envs:memory_agents/NoSuchTask-v0' is not registered" in err
    assert "memory_agents/PassiveVisualMatch-v0" in err  # lists the choices


def test_missing_checkpoint_is_a_clear_error(capsys, tmp_path):
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2  # exists, but holds no checkpoint
    assert "No RLlib checkpoint found" in capsys.readouterr().err


def test_checkpoint_of_another_module_is_a_clear_error(capsys, tmp_path):
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule

    other = DefaultPPOTorchRLModule(
        observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
        action_space=gym.spaces.Discrete(2),
        model_config={"fcnet_hiddens": [8], "vf_share_layers": True},
    )
    other.save_to_path(tmp_path / "module")
    assert main(["evaluate", str(tmp_path / "module"), "--env", "CartPole-v1"]) == 2
    err = capsys.readouterr().err
    assert "DefaultPPOTorchRLModule" in err and "not a memory_agents RecurrentCellModule" in err
