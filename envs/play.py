"""Play a memory task with the keyboard.

    python -m envs.play memory_agents/ActiveVisualMatch-v0 [--seed 0] [--view egocentric]
        [--distractor-steps 30]

Top-down view: arrow keys move north/south/west/east. Egocentric view: left/right turn, up
moves forward. Backspace starts a new episode, Escape (or closing the window) quits. At the
end of each episode the phase-3 reward and success are printed, then a new episode starts.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import pygame

import envs  # noqa: F401  (registers the ids)

TOP_DOWN_KEYS = {"up": 0, "down": 1, "left": 2, "right": 3}
EGOCENTRIC_KEYS = {"left": 0, "right": 1, "up": 2}


class Player:
    """Turns key presses into steps of a ``render_mode="human"`` environment."""

    def __init__(self, env: gym.Env, seed: int | None = None):
        self.env = env
        self.seed = seed
        self.keys = TOP_DOWN_KEYS if env.unwrapped.view == "top_down" else EGOCENTRIC_KEYS
        self.closed = False
        self.episode_return = 0.0

    def reset(self) -> None:
        self.env.reset(seed=self.seed)
        self.seed = None if self.seed is None else self.seed + 1  # a new episode each time
        self.episode_return = 0.0

    def handle_key(self, key: str) -> dict | None:
        """Act on one key name (pygame.key.name); returns the step's info, if it stepped."""
        if key == "escape":
            self.closed = True
            return None
        if key == "backspace":
            self.reset()
            return None
        if key not in self.keys:
            return None
        _, reward, terminated, truncated, info = self.env.step(self.keys[key])
        self.episode_return += reward
        if reward:
            print(f"step {self.env.unwrapped.step_count}: reward {reward:g}")
        if terminated or truncated:
            print(
                f"episode over: last-phase reward {info['last_phase_reward']:g}, "
                f"success {info['success']:g}, return {self.episode_return:g}"
            )
            self.reset()
        return info

    def run(self) -> None:
        """Blocking event loop; returns when the player quits."""
        while not self.closed:
            event = pygame.event.wait()
            if event.type == pygame.QUIT:
                self.closed = True
            elif event.type == pygame.KEYDOWN:
                self.handle_key(pygame.key.name(event.key))
        self.env.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env_id", nargs="?", default="memory_agents/ActiveVisualMatch-v0")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--view", choices=("top_down", "egocentric"), default="top_down")
    parser.add_argument("--distractor-steps", type=int, default=None)
    args = parser.parse_args(argv)
    kwargs = {"render_mode": "human", "view": args.view}
    if args.distractor_steps is not None:
        kwargs["distractor_steps"] = args.distractor_steps
    player = Player(gym.make(args.env_id, **kwargs), seed=args.seed)
    player.reset()
    player.run()


if __name__ == "__main__":
    main()
