"""Env steps per second of Visual Match training: the shipped config vs RLlib's built-in LSTM.

    OMP_NUM_THREADS=1 python benchmarks/rl_throughput.py        # -> benchmarks/results/rl_throughput.json

Three agents train PassiveVisualMatch (30-step delay, 60-step episodes) in one process:

- ``shipped``: `configs/ppo_passive_match_ur_lstm.py` as it is, evaluation off (as on the
  other two sides).
- ``reference``, pinned: RLlib's built-in PPO RLModule with ``use_lstm=True`` and the
  settings of issue 12: 16 envs x 4 episodes x 60 steps per batch, 8 epochs x 8 minibatches,
  CNN 16/32 3x3 "same", LSTM 128, ``vf_share_layers=True`` (one core for policy and value),
  sampling in the trainer (0 remote env runners), float32 pixels through a wrapper (its CNN
  does not take uint8).
- ``ours_at_reference``: our `RecurrentCellModule` (``ur-lstm``) with exactly the reference's
  algorithm settings (``max_seq_len`` 60 and one learner in the trainer process included) and
  a CNN of the same size (16/32 3x3, 256-wide embedding).

Two ratios come out: shipped / reference (issue 12's target: >= 2.5) and ours_at_reference /
reference (>= 1.0). Agents take turns iteration by iteration after a warm-up, so load on a
shared machine hits all alike; each number is the median over iterations of sampled env steps
/ iteration wall time. An agent that samples the next batch during its update
(`OverlapPPO`) is timed until that sample is in, so none of its work leaks into another's turn.

The floor is printed too: FLOPs per env step of each side's model (epochs x (forward +
backward) + the GAE value pass + the sampling forward) at one core's GEMM peak, next to the
env's own rate from benchmarks/results/envs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

# benchmarks/envs.py (the env benchmark) would shadow the `envs` package that registers
# the ids: take this script's folder off the import path.
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

RESULTS = _HERE / "results" / "rl_throughput.json"
SHIPPED_CONFIG = "ppo_passive_match_ur_lstm"
#: Issue 12's pinned reference: what the shipped config trained with before it.
REFERENCE = dict(
    num_envs=16, episodes_per_env=4, num_epochs=8, num_minibatches=8, hidden_size=128,
    conv_filters=[[16, 3, 1], [32, 3, 1]], embed_dim=256,
    lr=1e-3, gamma=0.96, lambda_=0.95, entropy_coeff=0.01, vf_loss_coeff=0.5, grad_clip=40.0,
)
SIDES = ("shipped", "reference", "ours_at_reference")


@dataclass
class Args:
    iterations: int = 6
    """timed iterations per agent (after the warm-up)"""
    warmup: int = 1
    """untimed iterations per agent first (one-off costs)"""
    gemm_gflops: float = 96.0
    """one core's float32 GEMM peak, for the floor (benchmarks/gemm.py measured ~92-113)"""
    num_envs: int = 0
    """0: each side's own; else envs per runner on every side (the fast test shrinks it)"""
    episodes_per_env: int = 0
    """0: each side's own; else episodes per env per batch on every side"""
    num_epochs: int = 0
    """0: each side's own; else PPO epochs on every side"""
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

    from memory_agents.rllib.config import make_env

    class FloatPixels(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            self.observation_space = gym.spaces.Box(0.0, 1.0, env.observation_space.shape, np.float32)

        def observation(self, obs):
            return obs.astype(np.float32) * (1.0 / 255.0)

    name = "float_pixels:" + env_id
    register_env(name, lambda cfg: FloatPixels(make_env(env_id, cfg)))
    return name


def _shrink(config, args: Args, horizon: int, runners: int) -> None:
    """Applies --num-envs/--episodes-per-env/--num-epochs (the fast test's small sizes)."""
    from memory_agents.rllib.config import default_minibatch_size

    envs = args.num_envs or config.num_envs_per_env_runner
    episodes = args.episodes_per_env or REFERENCE["episodes_per_env"]
    if args.num_envs or args.episodes_per_env:
        # RLlib's sizes are per learner.
        batch = envs * episodes * horizon * max(1, runners) // max(1, config.num_learners)
        config.env_runners(num_envs_per_env_runner=envs)
        config.training(train_batch_size_per_learner=batch,
                        minibatch_size=default_minibatch_size(batch, horizon))
    if args.num_epochs:
        config.training(num_epochs=args.num_epochs)


def build_config(side: str, args: Args):
    """The AlgorithmConfig of one side (evaluation off)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from memory_agents.rllib.config import episode_length, memory_agent_config
    from memory_agents.rllib.train import load_config_file

    shipped, _, _ = load_config_file(SHIPPED_CONFIG)
    env, env_config = shipped.env, dict(shipped.env_config)
    horizon = episode_length(env, env_config)
    ref = REFERENCE
    batch = ref["num_envs"] * ref["episodes_per_env"] * horizon
    ppo = dict(
        train_batch_size_per_learner=batch, minibatch_size=batch // ref["num_minibatches"],
        num_epochs=ref["num_epochs"], **{k: ref[k] for k in (
            "lr", "gamma", "lambda_", "entropy_coeff", "vf_loss_coeff", "grad_clip")},
    )
    if side == "shipped":
        config = shipped
    elif side == "ours_at_reference":
        config = memory_agent_config(
            env, cell="ur-lstm", hidden_size=ref["hidden_size"], env_config=env_config,
            num_env_runners=0, num_envs_per_env_runner=ref["num_envs"], overlap_sampling=False,
            num_learners=0,  # the reference learns in its trainer process too
            model_config={"conv_filters": ref["conv_filters"], "embed_dim": ref["embed_dim"],
                          "max_seq_len": horizon},
        ).training(**ppo)
    else:
        config = (
            PPOConfig()
            .environment(float_pixels_env(env), env_config=env_config)
            .env_runners(num_env_runners=0, num_envs_per_env_runner=ref["num_envs"],
                         rollout_fragment_length="auto")
            .rl_module(rl_module_spec=RLModuleSpec(model_config={
                "use_lstm": True, "lstm_cell_size": ref["hidden_size"], "max_seq_len": horizon,
                "vf_share_layers": True,
                # RLlib's format [out_channels, [k, k], stride]; "same" padding like ours.
                "conv_filters": [[c, [k, k], s] for c, k, s in ref["conv_filters"]],
            }))
            .training(**ppo)
        )
    config.evaluation(evaluation_interval=None)
    _shrink(config, args, horizon, config.num_env_runners)
    return config


def forward_flops_per_step(module) -> float:
    """FLOPs of one env step's forward pass: every Linear/Conv2d (hooks on a one-step
    forward) plus the recurrent core's input and recurrent projections."""
    from torch import nn

    from ray.rllib.core.columns import Columns

    flops = 0.0

    def count(layer, inputs, output):
        nonlocal flops
        if isinstance(layer, nn.Linear):
            flops += 2.0 * layer.in_features * output.numel()
        elif isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            flops += 2.0 * layer.in_channels // layer.groups * kh * kw * output.numel()

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        space = module.observation_space
        obs = torch.as_tensor(space.sample()[None, None])
        state = {k: torch.as_tensor(v)[None] for k, v in module.get_initial_state().items()}
        batch = {Columns.OBS: obs}
        if state:
            batch[Columns.STATE_IN] = state
        with torch.no_grad():
            module.forward_train(batch)
    finally:
        for hook in hooks:
            hook.remove()
    # Recurrent cores that are not nn.Linear (ours run in C; torch.nn.LSTM in ATen).
    for name, param in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith(("weight_ih", "weight_hh")) and param.dim() == 2:
            flops += 2.0 * param.numel()
    return flops


def floor(module, num_epochs: int, gemm_gflops: float) -> Dict[str, float]:
    """The learner-side floor: training FLOPs per env step at one core's GEMM peak.

    Per env step: num_epochs x (forward + backward ~ 3 forwards) + the GAE value pass (one
    forward) + the sampling forward.
    """
    forward = forward_flops_per_step(module)
    per_step = forward * (3 * num_epochs + 2)
    return {
        "forward_mflop_per_step": round(forward / 1e6, 3),
        "train_mflop_per_env_step": round(per_step / 1e6, 2),
        "floor_env_steps_per_s_one_core": round(gemm_gflops * 1e9 / per_step),
    }


def learner_stats(learner, num_epochs: int, gemm_gflops: float) -> Dict[str, Any]:
    """Parameters and floor of a learner's (full) module."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    module = learner.module[DEFAULT_MODULE_ID]
    return {"parameters": sum(p.numel() for p in module.parameters()),
            "floor": floor(module, num_epochs, gemm_gflops)}


def env_rate() -> Dict[str, Any]:
    """The env's own rate, as benchmarks/envs.py measured it (its JSON), if present."""
    path = _HERE / "results" / "envs.json"
    if not path.is_file():
        return {}
    for row in json.loads(path.read_text()).get("results", []):
        if row.get("env_id") == "memory_agents/PassiveVisualMatch-v0":
            return {"env_single_steps_per_s": round(row["single_steps_per_s"]),
                    "env_vector16_steps_per_s": round(row["vector16_steps_per_s"]),
                    "source": "benchmarks/results/envs.json"}
    return {}


def settings_of(config) -> Dict[str, Any]:
    """What each side trains with, for the report."""
    spec = config._rl_module_spec
    model = dict(getattr(spec, "model_config", None) or config.model_config or {})
    return {
        "algo": config.algo_class.__name__,
        "module": getattr(getattr(spec, "module_class", None), "__name__", "RLlib default (use_lstm)"),
        "model_config": {k: model[k] for k in (
            "cell", "hidden_size", "lstm_cell_size", "conv_filters", "embed_dim", "use_lstm",
            "vf_share_layers", "max_seq_len") if k in model},
        "num_env_runners": config.num_env_runners,
        "num_envs_per_env_runner": config.num_envs_per_env_runner,
        "num_learners": config.num_learners,
        "train_batch_size": config.total_train_batch_size,
        "train_batch_size_per_learner": config.train_batch_size_per_learner,
        "minibatch_size": config.minibatch_size,
        "num_epochs": config.num_epochs,
        "lr": config.lr,
    }


def timed_iteration(algo) -> tuple:
    """(env steps sampled, wall seconds) of one iteration; an overlapping agent is timed
    until the batch it started sampling is in."""
    start = time.perf_counter()
    result = algo.train()
    wait = getattr(algo, "wait_for_samples", None)
    if wait is not None:
        wait()
    return result["env_runners"]["num_env_steps_sampled"], time.perf_counter() - start


def run(args: Args) -> Dict[str, Any]:
    import ray

    from memory_agents.ray_init import init_ray

    torch.set_num_threads(1)
    if __name__ != "__main__":  # loaded by file path (the test): learner processes cannot import it by name
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    load_start = os.getloadavg()
    init_ray(None, torch_threads=1, quiet=True)
    configs = {side: build_config(side, args) for side in SIDES}
    algos = {side: config.build_algo() for side, config in configs.items()}
    try:
        for algo in algos.values():
            for _ in range(args.warmup):
                algo.train()
        steps: Dict[str, List[int]] = {s: [] for s in SIDES}
        seconds: Dict[str, List[float]] = {s: [] for s in SIDES}
        for i in range(args.iterations):
            for side, algo in algos.items():
                sampled, elapsed = timed_iteration(algo)
                steps[side].append(sampled)
                seconds[side].append(elapsed)
                print(f"iteration {i} {side:17s} {sampled} steps in {elapsed:.2f} s "
                      f"({sampled / elapsed:.0f} steps/s)", flush=True)
        rates = {s: statistics.median(n / t for n, t in zip(steps[s], seconds[s])) for s in SIDES}
        # The learner's module (the env runners' is inference-only: no value head).
        learned = {s: next(iter(algo.learner_group.foreach_learner(
            lambda learner, e=configs[s].num_epochs: learner_stats(learner, e, args.gemm_gflops)))).get()
            for s, algo in algos.items()}
    finally:
        for algo in algos.values():
            algo.stop()
    floors = {s: learned[s]["floor"] for s in SIDES}
    shipped_floor = floors["shipped"]["floor_env_steps_per_s_one_core"]
    report = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/rl_throughput.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in asdict(args).items() if k != "out"),
        "env_steps_per_s": {s: round(r, 1) for s, r in rates.items()},
        "shipped_vs_reference": round(rates["shipped"] / rates["reference"], 3),
        "ours_at_reference_vs_reference": round(rates["ours_at_reference"] / rates["reference"], 3),
        "targets": {"shipped_vs_reference": 2.5, "ours_at_reference_vs_reference": 1.0},
        "settings": {s: settings_of(c) for s, c in configs.items()},
        "parameters": {s: learned[s]["parameters"] for s in SIDES},
        "iteration_seconds": {s: [round(t, 3) for t in seconds[s]] for s in SIDES},
        "floor": {**{s: floors[s] for s in SIDES}, "env": env_rate(),
                  "gemm_gflops_one_core": args.gemm_gflops,
                  "shipped_fraction_of_its_floor": round(rates["shipped"] / shipped_floor, 3)},
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_1m_5m_15m": {"start": [round(x, 2) for x in load_start],
                                       "end": [round(x, 2) for x in os.getloadavg()]},
            "torch": torch.__version__, "ray": ray.__version__, "torch_threads": 1,
        },
        "args": asdict(args),
    }
    return report


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, value in asdict(Args()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = Args(**vars(parser.parse_args(argv)))
    report = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("env_steps_per_s", "shipped_vs_reference",
                                             "ours_at_reference_vs_reference", "floor", "machine")}, indent=2))
    print(f"shipped vs reference: {report['shipped_vs_reference']:.2f}x (target >= 2.5); "
          f"ours vs built-in at the reference's settings: "
          f"{report['ours_at_reference_vs_reference']:.2f}x (target >= 1.0)")
    return report


if __name__ == "__main__":
    main()
