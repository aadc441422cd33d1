"""Env steps per second of PPO training: our UR-LSTM RLModule vs RLlib's built-in LSTM.

    .venv/bin/python benchmarks/rl_throughput.py                     # writes the JSON below
    .venv/bin/python benchmarks/rl_throughput.py --iterations 6 --hidden-size 256

Both agents train PPO on the same env with the same settings (vectorised envs, batch,
minibatch, epochs, max_seq_len = one whole episode, hidden size, CNN filters), in the same
process, one local env runner and learner each (`torch.set_num_threads(1)`):

- ours:     `RecurrentCellModule` with ``cell="ur-lstm"`` (memory_agents.cells)
- built-in: RLlib's default PPO RLModule with ``use_lstm=True, lstm_cell_size=hidden``
  (torch.nn.LSTM), ``vf_share_layers=True`` so both share one recurrent core between
  policy and value like ours (PPO's own default builds a second LSTM for the value).

Iterations alternate (ours, built-in, ours, ...) after a warm-up, so load on the shared
machine hits both alike; the reported number is the median over iterations of
sampled env steps / iteration wall time. Output: benchmarks/results/rl_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

# benchmarks/envs.py (the env benchmark) would shadow the `envs` package that registers
# the ids: take this script's folder off the import path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

RESULTS = Path(__file__).resolve().parent / "results" / "rl_throughput.json"
CONV_FILTERS = [[16, 3, 1], [32, 3, 1]]


@dataclass
class Args:
    env: str = "envs:memory_agents/PassiveVisualMatch-Delay30-v0"
    """env id (the 30-step-delay preset: 60-step episodes)"""
    hidden_size: int = 128
    """recurrent hidden size of both agents"""
    num_envs: int = 16
    """vectorised envs in the (local) env runner"""
    episodes_per_env: int = 4
    """train batch = num_envs * episodes_per_env * episode length"""
    num_epochs: int = 4
    """PPO epochs per batch (minibatch = batch / 4)"""
    iterations: int = 5
    """timed iterations per agent (after one warm-up each)"""
    out: str = str(RESULTS)
    """JSON output"""


def float_pixels_env(env_id: str) -> str:
    """Registers (with Tune) `env_id` with uint8 pixels scaled to float32 [0, 1].

    RLlib's built-in CNN casts nothing (uint8 input fails in conv2d); our module rescales
    bounded Boxes itself, so only the built-in agent gets this wrapper.
    """
    import gymnasium as gym
    import numpy as np
    from ray.tune.registry import register_env

    class FloatPixels(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            self.observation_space = gym.spaces.Box(0.0, 1.0, env.observation_space.shape, np.float32)

        def observation(self, obs):
            return obs.astype(np.float32) * (1.0 / 255.0)

    name = "float_pixels:" + env_id
    register_env(name, lambda cfg: FloatPixels(gym.make(env_id, **cfg)))
    return name


def build(args: Args, which: str):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from memory_agents.rllib.config import episode_length, memory_agent_config

    horizon = episode_length(args.env)
    batch = args.num_envs * args.episodes_per_env * horizon
    common = dict(
        train_batch_size_per_learner=batch, minibatch_size=batch // 4, num_epochs=args.num_epochs,
        lr=3e-4, gamma=0.96, lambda_=0.95, entropy_coeff=0.01, vf_loss_coeff=0.5, grad_clip=40.0,
    )
    if which == "ours":
        config = memory_agent_config(
            args.env, cell="ur-lstm", hidden_size=args.hidden_size,
            num_envs_per_env_runner=args.num_envs,
            model_config={"max_seq_len": horizon, "conv_filters": CONV_FILTERS},
        )
    else:
        config = (
            PPOConfig()
            .environment(float_pixels_env(args.env))
            .env_runners(num_env_runners=0, num_envs_per_env_runner=args.num_envs,
                         rollout_fragment_length="auto")
            .rl_module(rl_module_spec=RLModuleSpec(model_config={
                "use_lstm": True, "lstm_cell_size": args.hidden_size, "max_seq_len": horizon,
                "vf_share_layers": True,
                # RLlib format [out_channels, [k, k], stride]; "same" padding like ours.
                "conv_filters": [[c, [k, k], s] for c, k, s in CONV_FILTERS],
            }))
        )
    config.training(**common)
    return config.build_algo(), batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, value in asdict(Args()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = Args(**vars(parser.parse_args()))

    import ray

    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    agents = {name: build(args, name) for name in ("ours", "builtin")}
    params = {
        name: sum(p.numel() for p in algo.get_module().parameters()) for name, (algo, _) in agents.items()
    }
    for name, (algo, _) in agents.items():  # warm-up: first iteration pays one-off costs
        algo.train()
    times = {name: [] for name in agents}
    steps = {name: [] for name in agents}
    for i in range(args.iterations):
        for name, (algo, _) in agents.items():
            start = time.perf_counter()
            result = algo.train()
            elapsed = time.perf_counter() - start
            sampled = result["env_runners"]["num_env_steps_sampled"]
            times[name].append(elapsed)
            steps[name].append(sampled)
            print(f"iteration {i} {name:8s} {sampled} steps in {elapsed:.2f} s "
                  f"({sampled / elapsed:.0f} steps/s)", flush=True)
    rates = {n: statistics.median(s / t for s, t in zip(steps[n], times[n])) for n in agents}
    report = {
        "command": "python benchmarks/rl_throughput.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in asdict(args).items() if k != "out"),
        "settings": {k: v for k, v in asdict(args).items() if k != "out"},
        "batch_env_steps": agents["ours"][1],
        "env_steps_per_s": {n: round(r, 1) for n, r in rates.items()},
        "speedup_ours_vs_builtin": round(rates["ours"] / rates["builtin"], 3),
        "iteration_seconds": {n: [round(t, 3) for t in times[n]] for n in agents},
        "parameters": params,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                   f"ray {ray.__version__}, 1 torch thread",
    }
    for algo, _ in agents.values():
        algo.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
