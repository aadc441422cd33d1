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
    for option in ("--checkpoint-freq", "--checkpoint-at-end", "--storage-path", "--resume",
                   "--checkpoint-every-s", "--keep-checkpoints", "--torch-threads",
                   "--experiment-name", "--num-samples", "--ray-address", "--stop", "--config"):
        assert option in proc.stdout


def test_unknown_cell_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("MEMORY_AGENTS_CELL", "ur-lstmm")
    code = main(["train", "file", str(REPO / CONFIG), "--stop", '{"training_iteration": 1}'])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown model_config['cell'] 'ur-lstmm' (did you mean 'ur-lstm'" in err
    assert "ppo_passive_match_ur_lstm.py" in err and "Traceback" not in err


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


# --- bad configurations: one line naming the problem, exit 2, before Ray starts --------

BAD_TRAIN_CALLS = [
    # (argv after `train`, extra env, text the error must contain)
    (["file", CONFIG, "--config", '{"lrr": 1e-3}'], {}, "unknown --config key 'lrr'. Did you mean 'lr'"),
    (["file", CONFIG, "--config", '{"model_config": {"hiden_size": 8}}'], {},
     "unknown model_config key 'hiden_size'. Did you mean 'hidden_size'"),
    (["file", CONFIG, "--config", '{"model_config": {"hidden_size": -3}}'], {},
     "model_config['hidden_size'] must be an integer >= 1, got -3"),
    (["file", CONFIG, "--config", '{"model_config": {"conv_filters": [[16, 3]]}}'], {},
     "conv_filters'] entry [16, 3] is not [out_channels, kernel, stride]"),
    (["file", CONFIG, "--config", '{"env_config": {"distractor_stepz": 5}}'], {},
     "unknown env_config of envs:memory_agents/PassiveVisualMatch-v0 key 'distractor_stepz'. "
     "Did you mean 'distractor_steps'"),
    (["file", CONFIG, "--config", '{"env_config": {"distractor_steps": -5}}'], {}, "distractor_steps"),
    (["file", CONFIG], {"MEMORY_AGENTS_DELAY": "abc"}, "MEMORY_AGENTS_DELAY='abc' is not an integer"),
    (["file", CONFIG, "--algo", "APPO"], {}, "--algo/--env apply to flag mode only"),
    (["file", CONFIG, "--env", "CartPole-v1"], {}, "--algo/--env apply to flag mode only"),
    (["file", "ppo_pasive_match_ur_lstm"], {}, "did you mean ppo_passive_match_ur_lstm"),
    (["--env", "memory_agents/PassiveVisualMatch-v0", "--config", '{"model_config": {"cel": "gru"}}'], {},
     "unknown model_config key 'cel'. Did you mean 'cell'"),
]


@pytest.mark.parametrize("argv,env,expected", BAD_TRAIN_CALLS)
def test_bad_configuration_is_one_clear_line_before_ray_starts(argv, env, expected, capsys, monkeypatch, tmp_path):
    import ray

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) if "--algo/--env" in expected else _no_exit():
        code = main(["train", *argv, "--storage-path", str(tmp_path)])
        assert code == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not ray.is_initialized()
    assert not any(tmp_path.iterdir())  # nothing was started


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("body,expected", [
    ("raise RuntimeError('boom')", "bad.py: RuntimeError: boom"),
    ("x = 1", "must define `config`, an RLlib AlgorithmConfig (no variable `config`)"),
    ("config = {'lr': 1}", "`config` is a dict"),
])
def test_broken_config_file_is_one_line_naming_it(body, expected, capsys, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(body + "\n")
    assert main(["train", "file", str(bad), "--storage-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_the_fixed_order_config_ships_its_own_entropy_bonus(monkeypatch):
    from memory_agents.rllib import defaults
    from memory_agents.rllib.train import load_config_file

    monkeypatch.delenv("MEMORY_AGENTS_COLOUR_ORDER", raising=False)
    fixed, _, _ = load_config_file("ppo_passive_match_fixed_ur_lstm")
    shipped, _, _ = load_config_file("ppo_passive_match_ur_lstm")
    assert fixed.env_config["colour_order"] == "fixed" and fixed.entropy_coeff == 0.03
    assert shipped.env_config["colour_order"] == "instance" and shipped.entropy_coeff == defaults.ENTROPY_COEFF == 0.01
    # The knob still wins over a file's own default.
    monkeypatch.setenv("MEMORY_AGENTS_COLOUR_ORDER", "episode")
    assert load_config_file("ppo_passive_match_fixed_ur_lstm")[0].env_config["colour_order"] == "episode"


def test_rllib_style_conv_filters_are_accepted():
    from memory_agents.rllib.module import check_model_config

    cfg = check_model_config({"conv_filters": [[16, [3, 3], 1], [32, [3, 5], [1, 2]]]})
    assert cfg["conv_filters"] == [[16, (3, 3), (1, 1)], [32, (3, 5), (1, 2)]]
    module = make_module_with({"conv_filters": [[16, [3, 3], 1], [32, [3, 5], [1, 2]]], "hidden_size": 8})
    out = module.forward_inference(_one_step_batch(module))
    assert out["action_dist_inputs"].shape == (1, 1, 4)


def make_module_with(model_config):
    from memory_agents.rllib.module import RecurrentCellModule

    env = gym.make("envs:memory_agents/PassiveVisualMatch-Delay15-v0")
    return RecurrentCellModule(observation_space=env.observation_space, action_space=env.action_space,
                               model_config=model_config)


def _one_step_batch(module):
    import torch

    obs = torch.zeros((1, 1, *module.observation_space.shape), dtype=torch.uint8)
    state = {k: torch.from_numpy(v)[None] for k, v in module.get_initial_state().items()}
    return {"obs": obs, "state_in": state}


def test_evaluate_rejects_zero_episodes_and_unwritable_video_before_running(trained, capsys):
    experiment, _ = trained
    with pytest.raises(SystemExit):
        main(["evaluate", str(experiment), "--episodes", "0"])
    assert "must be >= 1" in capsys.readouterr().err
    try:
        import imageio_ffmpeg  # noqa: F401
        pytest.skip("imageio-ffmpeg is installed: .mp4 can be written here")
    except ImportError:
        pass
    assert main(["evaluate", str(experiment), "--episodes", "1", "--gif", "x.mp4"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'imageio[ffmpeg]'" in err


def test_evaluate_writes_a_gif_with_the_base_install(trained, tmp_path):
    from PIL import Image

    experiment, _ = trained
    gif = tmp_path / "episode.gif"
    assert main(["evaluate", str(experiment), "--episodes", "1", "--gif", str(gif)]) == 0
    with Image.open(gif) as image:
        # 8 fps, one frame per step (Pillow merges repeated frames, adding their durations):
        # the episode's 35 steps + the first frame.
        total_ms = 0
        for i in range(image.n_frames):
            image.seek(i)
            total_ms += image.info["duration"]
    assert abs(total_ms - 36 * 125) <= 36 * 5  # GIF stores centiseconds


def test_strip_shows_every_step_of_the_last_phase():
    from memory_agents.rllib.evaluate import strip_frames

    info = [{"step": i, "phase": 1 if i < 5 else 2 if i < 20 else 3} for i in range(30)]
    assert strip_frames(info) == [0, 1, 2, 19] + list(range(20, 30))


def test_evaluate_with_the_memory_probe(trained, capsys):
    experiment, _ = trained
    assert main(["evaluate", str(experiment), "--episodes", "12", "--probe"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("memory probe:"))
    assert "on 6 held-out episodes" in line and "fitted on 6" in line
    accuracy = float(line.split("accuracy ")[1].split()[0])
    assert 0.0 <= accuracy <= 1.0


def test_export_writes_a_small_agent_that_evaluates_like_the_checkpoint(trained, tmp_path, capsys):
    experiment, _ = trained
    out = tmp_path / "agents" / "ur-lstm-s0"
    assert main(["export", str(experiment), str(out)]) == 0
    assert "exported to" in capsys.readouterr().out
    files = {p.name for p in out.iterdir()}
    assert {"agent.json", "class_and_ctor_args.pkl", "module_state.pkl"} <= files
    assert not (out / "learner_group").exists()  # the module alone, no optimizer state
    import json

    agent = json.loads((out / "agent.json").read_text())
    assert agent["env"].endswith("PassiveVisualMatch-v0")
    assert agent["env_config"]["distractor_steps"] == 5  # the TINY_ENV delay it trained on
    assert agent["exported_from"].startswith("checkpoint_")  # a name, not a machine's path
    # The exported agent plays exactly the episodes the checkpoint plays.
    assert main(["evaluate", str(experiment), "--episodes", "6", "--seed", "7"]) == 0
    from_checkpoint = capsys.readouterr().out
    assert main(["evaluate", str(out), "--episodes", "6", "--seed", "7"]) == 0
    from_export = capsys.readouterr().out
    assert from_export == from_checkpoint
    # An existing folder is not overwritten without --force.
    assert main(["export", str(experiment), str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(experiment), str(out), "--force"]) == 0


def test_evaluate_reports_which_square_the_agent_touches(trained, capsys):
    experiment, _ = trained
    assert main(["evaluate", str(experiment), "--episodes", "10"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("final phase: touched"))
    shares = [float(line.split(f"{name} ")[1].split()[0].rstrip(";")) for name in ("left", "centre", "right", "none")]
    assert abs(sum(shares) - 1.0) < 1e-6
    success = float(next(l for l in out.splitlines() if l.startswith("success rate:")).split()[2])
    parts = line.split("right: ")[1].split(";")[0].split(" / ")
    per_target = [(float(p.split()[0]), int(p.split("n=")[1].rstrip(")"))) if p != "n/a" else (0.0, 0)
                  for p in parts]
    assert sum(n for _, n in per_target) == 10
    # Touching the target's square is exactly what success is.
    assert abs(sum(rate * n for rate, n in per_target) - 10 * success) < 0.05
