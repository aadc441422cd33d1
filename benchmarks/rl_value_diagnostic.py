"""Does a trained Visual Match agent's value function see whether the centre square matches?

    python benchmarks/rl_value_diagnostic.py CHECKPOINT [--episodes 200] [--out FILE.json]

A diagnostic for an agent that touches the centre square whatever the colours (issue 14).
Every episode is played by a script, not by the agent: the agent's own actions in phases 1
and 2, then, in the reward room, straight up to the centre square (the centre square enters
the 5x5 view after the second step and is touched at the fourth). Along the way the agent's
value estimate V(t) is read at every step of the reward room. Split by whether the centre
square has the phase-1 colour:

- if V after the centre square comes into view (steps 2-3) is clearly higher for matching
  episodes, the critic compares the colours, and the actor is what fails to use it;
- if the two are the same, nothing in the agent compares the colours at all.

The logits of "up" at the same steps say whether the actor's choice depends on the match.

Second, a calibration: ``--calibration-episodes`` episodes played by the agent itself with
sampled actions (as in training); at every step the mean of its value estimate against the
mean discounted return that followed (gamma ``--gamma``, the configs' 0.96). A critic that
learned the final reward tracks the return in every phase.

Prints both tables and writes them as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

UP = 0  # top-down actions in the release's order: north, south, west, east


def agent_step(module, obs, state, prev_action, prev_reward):
    """One step of the agent: (value estimate, logits (1, actions), next recurrent state)."""
    from ray.rllib.core.columns import Columns

    from memory_agents.rllib.evaluate import module_observation

    batch = {Columns.OBS: module_observation(module, obs, prev_action, prev_reward), Columns.STATE_IN: state}
    with torch.no_grad():
        out = module.forward_train(batch)
        value = float(module.compute_values(batch, embeddings=out[Columns.EMBEDDINGS])[0, 0])
    return value, out[Columns.ACTION_DIST_INPUTS][:, 0], out[Columns.STATE_OUT]


def trace(checkpoint: str, episodes: int, seed: int, calibration_episodes: int = 60,
          gamma: float = 0.96) -> Dict[str, Any]:
    from memory_agents.rllib.config import check_env_id, make_env
    from memory_agents.rllib.evaluate import _batch_state, env_from_checkpoint, find_module_checkpoint, load_module

    module_dir, algo_dir = find_module_checkpoint(checkpoint)
    module = load_module(module_dir)
    env_id, env_config = env_from_checkpoint(algo_dir, module_dir)
    env = make_env(check_env_id(env_id), env_config)
    dist_cls = module.get_inference_action_dist_cls()
    rows: List[Dict[str, Any]] = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        base = env.unwrapped
        state = _batch_state(module.get_initial_state())
        prev_action, prev_reward, step3 = None, 0.0, 0
        match = base.target_square == 1
        while True:
            value, logits, state = agent_step(module, obs, state, prev_action, prev_reward)
            p_up = float(torch.softmax(logits, -1)[0, UP])
            if info.get("phase") == 3:
                rows.append({"episode": episode, "step": step3, "match": bool(match),
                             "value": value, "p_up": p_up})
                action = UP
                step3 += 1
            else:
                action = int(dist_cls.from_logits(logits).to_deterministic().sample()[0])
            obs, reward, terminated, truncated, info = env.step(action)
            prev_action, prev_reward = np.asarray(action), float(reward)
            if terminated or truncated or step3 > 4:  # the touch is at the 4th step; nothing after matters here
                break
    table = []
    for step in range(5):
        entry = {"step": step}
        for match in (True, False):
            part = [r for r in rows if r["step"] == step and r["match"] == match]
            key = "match" if match else "mismatch"
            entry[f"value_{key}"] = float(np.mean([r["value"] for r in part])) if part else float("nan")
            entry[f"p_up_{key}"] = float(np.mean([r["p_up"] for r in part])) if part else float("nan")
            entry[f"n_{key}"] = len({r["episode"] for r in part})
        table.append(entry)
    calibration = calibrate(module, env, dist_cls, calibration_episodes, seed + episodes, gamma)
    env.close()
    return {"checkpoint": Path(checkpoint).name, "env": env_id, "env_config": env_config, "steps": table,
            "calibration": calibration}


def calibrate(module, env, dist_cls, episodes: int, seed: int, gamma: float) -> List[Dict[str, Any]]:
    """Mean value estimate and mean discounted return per step, sampled actions."""
    from memory_agents.rllib.evaluate import _batch_state

    generator = torch.Generator().manual_seed(seed)
    values, returns, phases = [], [], []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        state = _batch_state(module.get_initial_state())
        prev_action, prev_reward, done = None, 0.0, False
        v, r, p = [], [], []
        while not done:
            value, logits, state = agent_step(module, obs, state, prev_action, prev_reward)
            v.append(value)
            action = int(torch.multinomial(torch.softmax(logits[0], -1), 1, generator=generator))
            p.append(info.get("phase"))
            obs, reward, terminated, truncated, info = env.step(action)
            prev_action, prev_reward = np.asarray(action), float(reward)
            r.append(float(reward))
            done = terminated or truncated
        g, discounted = 0.0, []
        for reward in reversed(r):
            g = reward + gamma * g
            discounted.append(g)
        values.append(v)
        returns.append(discounted[::-1])
        phases.append(p)
    values, returns = np.array(values), np.array(returns)
    return [{"step": t, "phase": phases[0][t], "value": float(values[:, t].mean()),
             "return": float(returns[:, t].mean())} for t in range(values.shape[1])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument("--calibration-episodes", type=int, default=60)
    parser.add_argument("--gamma", type=float, default=0.96)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from memory_agents.ray_init import quiet_process

    quiet_process()
    result = trace(args.checkpoint, args.episodes, args.seed, args.calibration_episodes, args.gamma)
    print("reward-room step (0 = entering it; the centre square is in view from step 2, touched at the 4th "
          "action) | V: centre matches | V: does not | P(up): matches | P(up): does not")
    for e in result["steps"]:
        print(f"{e['step']} | {e['value_match']:.3f} | {e['value_mismatch']:.3f} | "
              f"{e['p_up_match']:.3f} | {e['p_up_mismatch']:.3f}")
    print(f"episodes: {result['steps'][0]['n_match']} matching, {result['steps'][0]['n_mismatch']} not")
    print(f"\ncalibration, {args.calibration_episodes} episodes with sampled actions: step | phase | "
          f"mean value estimate | mean discounted return")
    for e in result["calibration"]:
        print(f"{e['step']} | {e['phase']} | {e['value']:.2f} | {e['return']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
