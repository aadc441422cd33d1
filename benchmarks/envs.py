"""Steps per second of the memory tasks, next to minigrid's MiniGrid-MemoryS13Random-v0.

    OMP_NUM_THREADS=1 python benchmarks/envs.py            # writes benchmarks/results/envs.json

Every env is built with ``gym.make`` (so each carries Gymnasium's default wrappers) and driven
by uniformly random actions drawn beforehand; resets at episode ends are included in the time.
"single" is one env; "vector16" is ``gym.make_vec(..., num_envs=16, vectorization_mode="sync")``
and counts env steps (16 per call). Each number is the best of ``repeats`` runs, taken in turn
over all envs, since other processes on a shared machine only ever make a run slower.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time

# This script is itself named envs.py: keep its folder from shadowing the `envs` package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import gymnasium as gym  # noqa: E402
import minigrid  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402

MINIGRID_ID = "MiniGrid-MemoryS13Random-v0"
ENV_IDS = (
    MINIGRID_ID,
    "memory_agents/PassiveVisualMatch-v0",
    "memory_agents/ActiveVisualMatch-v0",
    "memory_agents/KeyToDoor-v0",
)


@dataclasses.dataclass
class Args:
    single_steps: int = 10_000
    """env steps timed for the single env"""
    vector_steps: int = 800
    """vector-env calls timed (x16 env steps)"""
    num_envs: int = 16
    """envs in the vector env"""
    repeats: int = 5
    """timed runs per number; the best is kept"""
    out: str = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "envs.json")
    """where the JSON goes"""


def time_single(env_id: str, steps: int, seed: int = 0) -> float:
    env = gym.make(env_id)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(env.action_space.n, size=steps)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def time_vector(env_id: str, calls: int, num_envs: int, seed: int = 0) -> float:
    # Vector envs reset finished sub-envs themselves (on the next call).
    vec = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    vec.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(
        vec.single_action_space.n, size=(calls, num_envs)
    )
    start = time.perf_counter()
    for action in actions:
        vec.step(action)
    elapsed = time.perf_counter() - start
    vec.close()
    return calls * num_envs / elapsed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for field in dataclasses.fields(Args):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = Args(**vars(parser.parse_args(argv)))

    # Round-robin over the envs in every repeat, so a change in the machine's load hits all
    # of them alike; keep each env's best run.
    single = {env_id: 0.0 for env_id in ENV_IDS}
    vector = dict(single)
    for _ in range(args.repeats):
        for env_id in ENV_IDS:
            single[env_id] = max(single[env_id], time_single(env_id, args.single_steps))
            vector[env_id] = max(vector[env_id], time_vector(env_id, args.vector_steps, args.num_envs))
    rows = [
        {"env_id": env_id, "single_steps_per_s": single[env_id], "vector16_steps_per_s": vector[env_id]}
        for env_id in ENV_IDS
    ]
    reference = rows[0]
    for row in rows:
        row["single_vs_minigrid"] = row["single_steps_per_s"] / reference["single_steps_per_s"]
        row["vector16_vs_minigrid"] = row["vector16_steps_per_s"] / reference["vector16_steps_per_s"]

    header = f"| {'env':<38} | {'single (steps/s)':>16} | {'vector 16 (steps/s)':>19} | {'single vs minigrid':>18} |"
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    for row in rows:
        print(
            f"| {row['env_id']:<38} | {row['single_steps_per_s']:>16,.0f} | "
            f"{row['vector16_steps_per_s']:>19,.0f} | {row['single_vs_minigrid']:>17.1f}x |"
        )

    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/envs.py",
        "args": dataclasses.asdict(args) | {"out": os.path.relpath(args.out)},
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            # Other processes share the CPUs; ratios within one run stay comparable.
            "load_average_1m_at_end": os.getloadavg()[0],
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "gymnasium": gym.__version__,
            "minigrid": minigrid.__version__,
        },
        "registered_ids": list(envs.REGISTERED_IDS),
        "results": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {os.path.relpath(args.out)}")
    return result


if __name__ == "__main__":
    main()
