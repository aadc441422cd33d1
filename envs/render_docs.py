"""Render the PNG frames of each task's phases shown in the README.

    python -m envs.render_docs [--out docs/envs]

Each frame is the whole room (minigrid tiles; the agent's 5x5 window is highlighted) at the
first step of a phase, with the agent's own observation, one pixel per cell scaled up, to
its right. Seed 0 for all three tasks; in Active Visual Match the agent first walks a short
search route until the colour is in view, so its phase-1 frame shows the search.
"""

from __future__ import annotations

import argparse
import os

import gymnasium as gym
import numpy as np
import pygame

import envs  # noqa: F401  (registers the ids)

TASKS = {
    "passive_visual_match": "memory_agents/PassiveVisualMatch-v0",
    "active_visual_match": "memory_agents/ActiveVisualMatch-v0",
    "key_to_door": "memory_agents/KeyToDoor-v0",
}
TILE = 32


def frame_with_view(env: gym.Env, obs: np.ndarray) -> np.ndarray:
    """The room, then the observation scaled up and centred on the room's height."""
    room = env.render()
    scale = room.shape[0] // obs.shape[0]
    view = np.kron(obs, np.ones((scale, scale, 1), dtype=np.uint8))
    panel = np.full((room.shape[0], view.shape[1] + TILE, 3), 255, dtype=np.uint8)
    top = (room.shape[0] - view.shape[0]) // 2
    panel[top : top + view.shape[0], TILE // 2 : TILE // 2 + view.shape[1]] = view
    return np.concatenate([room, panel], axis=1)


def save_png(path: str, image: np.ndarray) -> None:
    pygame.image.save(pygame.surfarray.make_surface(np.transpose(image, (1, 0, 2))), path)


def render_task(name: str, env_id: str, out: str, seed: int = 0) -> list[str]:
    env = gym.make(env_id, render_mode="rgb_array", tile_size=TILE)
    obs, info = env.reset(seed=seed)
    paths, phase = [], 0
    while True:
        if info["phase"] != phase:
            phase = info["phase"]
            if name == "active_visual_match" and phase == 1:
                obs = _search_for_colour(env, obs)
            path = os.path.join(out, f"{name}_phase{phase}.png")
            save_png(path, frame_with_view(env, obs))
            paths.append(path)
        # North, the agent's usual way out of every start cell, keeps the pictures tidy.
        obs, _, _, truncated, info = env.step(0)
        if truncated or phase == 3:
            break
    env.close()
    return paths


def _search_for_colour(env: gym.Env, obs: np.ndarray) -> np.ndarray:
    """Visit the four cells whose windows cover every wall until the colour is in view."""
    for goal_row, goal_col in ((4, 4), (2, 4), (2, 6), (4, 6)):
        while not _colour_in_view(obs):
            col, row = env.unwrapped.agent_pos
            if (row, col) == (goal_row, goal_col):
                break
            # Rows first, except where the wall between the rooms is in the way.
            if row != goal_row and col in (4, 5, 6):
                action = 0 if goal_row < row else 1
            else:
                action = 2 if goal_col < col else 3
            obs, *_ = env.step(action)
    return obs


def _colour_in_view(obs: np.ndarray) -> bool:
    pixels = obs.reshape(-1, 3)
    return any((pixels == rgb).all(axis=1).any() for rgb in envs.cells.COLOUR_RGB)


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join("docs", "envs"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    paths = []
    for name, env_id in TASKS.items():
        paths += render_task(name, env_id, args.out, args.seed)
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
