"""The three-phase structure shared by the memory tasks of Hung et al. (2018).

Every episode has an *explore* phase (learn something), a *distractor* phase (an apple room,
whose length is the memory delay) and a *reward* phase (act on what was learnt). Each phase
lasts its full length; when its timer runs out the agent is moved to the next room.
:class:`ThreePhaseEnv` owns the timers, the apple room, the two views, the observations and
rendering; a task subclass builds its explore and reward rooms and says what touching a cell
does.

Each room is a ``uint8`` array of cell codes (:mod:`envs.cells`), padded so that a view window
is a plain slice; an observation is one table lookup. A minigrid ``Grid`` is built from the
codes only when something asks for one (rendering, minigrid's wrappers), so stepping never
touches minigrid's per-cell Python objects.
"""

from __future__ import annotations

import math
from collections import deque
from numbers import Integral, Real
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, TILE_PIXELS
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.minigrid_env import MiniGridEnv

from envs import cells

HEIGHT, WIDTH = 7, 11  # every room of the release is 7 rows x 11 columns

# Phase 2, as released: 22 candidate apple cells ("a") in a checkerboard; the agent starts at S.
APPLE_ROOM = (
    "###########",
    "#a a a a a#",
    "# a a a a #",
    "#a a a a a#",
    "# a a a a #",
    "#a a S a a#",
    "###########",
)
APPLE_CELLS = cells.cells_marked(APPLE_ROOM, "a")
APPLE_ROOM_START = cells.cells_marked(APPLE_ROOM, "S")[0]

PHASE_NAMES = ("explore", "distractor", "reward")
VIEWS = ("top_down", "egocentric")
DEFAULT_VIEW_SIZE = {"top_down": 5, "egocentric": 7}

# Directions use minigrid's numbering: 0 east, 1 south, 2 west, 3 north.
EAST, SOUTH, WEST, NORTH = range(4)
DIR_TO_STEP = ((0, 1), (1, 0), (0, -1), (-1, 0))  # (d_row, d_col)
# Top-down actions, in the release's order: north, south, west, east.
TOP_DOWN_ACTION_DIRS = (NORTH, SOUTH, WEST, EAST)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high], else a ValueError that names the argument."""
    if not _is_int(value) or value < low or (high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_real(name: str, value: Any) -> float:
    if not _is_real(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


#: How an episode ends after its last step. "truncated" (the default): a time limit outside the
#: task, so an agent may bootstrap a value beyond it, as RLlib's PPO does: with its critic's own
#: estimate of the last observation, which nothing corrects (README, "Experiment 2": it
#: overestimated the reward room by 2-12). "terminated": the end of the task, nothing follows:
#: DeepMind's release, whose loss bootstraps zero there (tvt/rma.py, `Agent.loss`: "Bootstrap
#: value is at end of episode so is zero"). It calibrated the critic but did not make PPO learn
#: Visual Match sooner (README, "The episode's end, measured"), so the default stays truncated.
EPISODE_ENDS = ("truncated", "terminated")


class ThreePhaseEnv(MiniGridEnv):
    """Base class: explore -> distractor (apples) -> reward. Not registered; see subclasses.

    Subclasses implement :meth:`_new_episode` (draw the episode's hidden facts),
    :meth:`_explore_room` and :meth:`_reward_room` (codes, start cell, start direction), and
    extend :meth:`_enter` / :meth:`_blocked` for the cells that mean something in their task.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}

    def __init__(
        self,
        *,
        explore_steps: int = 15,
        distractor_steps: int = 90,
        reward_steps: int = 15,
        num_apples: int = 10,
        apple_reward: float | tuple[float, float] = 1.0,
        apple_respawn_steps: int | None = 20,
        final_reward: float = 10.0,
        episode_end: str = "truncated",
        view: str = "top_down",
        view_size: int | None = None,
        render_mode: str | None = None,
        tile_size: int = TILE_PIXELS,
        highlight: bool = True,
        agent_pov: bool = False,
        screen_size: int = 640,
    ):
        # Phase 1 and 3 need at least one step (the thing to remember must be seen, the choice
        # must be made); a zero delay is allowed and goes straight from phase 1 to phase 3.
        self.explore_steps = check_int("explore_steps", explore_steps, 1)
        self.distractor_steps = check_int("distractor_steps", distractor_steps, 0)
        self.reward_steps = check_int("reward_steps", reward_steps, 1)
        self.num_apples = check_int("num_apples", num_apples, 0, len(APPLE_CELLS))
        self.apple_reward = self._check_apple_reward(apple_reward)
        if apple_respawn_steps is not None and (
            not _is_int(apple_respawn_steps) or apple_respawn_steps < 1
        ):
            raise ValueError(
                "apple_respawn_steps must be an integer >= 1, or None for apples that never "
                f"respawn, got {apple_respawn_steps!r}"
            )
        self.apple_respawn_steps = apple_respawn_steps
        self.final_reward = check_real("final_reward", final_reward)
        if episode_end not in EPISODE_ENDS:
            raise ValueError(f"episode_end must be one of {EPISODE_ENDS}, got {episode_end!r}")
        self.episode_end = episode_end
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        self.view = view
        if view_size is None:
            view_size = DEFAULT_VIEW_SIZE[view]
        if not _is_int(view_size) or view_size < 3 or view_size % 2 == 0:
            raise ValueError(
                f"view_size must be an odd integer >= 3 (or None: {DEFAULT_VIEW_SIZE}), "
                f"got {view_size!r}"
            )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        self._phase_lengths = (self.explore_steps, self.distractor_steps, self.reward_steps)

        # Kept for MinigridObsWrapper: the default observation is a Box, not minigrid's dict.
        self.mission_space = MissionSpace(mission_func=self._gen_mission)
        super().__init__(
            mission_space=self.mission_space,
            width=WIDTH,
            height=HEIGHT,
            max_steps=sum(self._phase_lengths),
            # The release's window sees through walls; occlusion would hide the phase-1 colour
            # behind the room's own walls and change the task.
            see_through_walls=True,
            agent_view_size=int(view_size),
            render_mode=render_mode,
            screen_size=screen_size,
            highlight=highlight,
            tile_size=tile_size,
            agent_pov=agent_pov,
        )
        self.view_size = int(view_size)
        self._top_down = view == "top_down"
        self.action_space = spaces.Discrete(4 if self._top_down else 3)
        self.observation_space = spaces.Box(
            0, 255, (self.view_size, self.view_size, 3), dtype=np.uint8
        )
        self.reward_range = (-math.inf, math.inf)
        # Padding so that every window is an in-bounds slice. Top-down pads with floor (the
        # release's background); egocentric pads with walls (what minigrid's Grid.slice does).
        half = self.view_size // 2
        self._pad = half if self._top_down else self.view_size - 1
        self._pad_code = cells.FLOOR if self._top_down else cells.WALL
        self._apple_room = cells.parse_map(APPLE_ROOM)

    # ----------------------------------------------------------------------------------------
    # For subclasses

    @staticmethod
    def _gen_mission() -> str:
        raise NotImplementedError

    def _new_episode(self) -> None:
        """Draw the episode's hidden facts (from ``self.np_random``)."""

    def _explore_room(self) -> tuple[np.ndarray, tuple[int, int], int]:
        """Phase 1: (cell codes, start (row, col), start direction)."""
        raise NotImplementedError

    def _reward_room(self) -> tuple[np.ndarray, tuple[int, int], int]:
        """Phase 3: (cell codes, start (row, col), start direction)."""
        raise NotImplementedError

    def _enter(self, code: int, row: int, col: int) -> float:
        """The agent stepped onto a non-floor cell; returns the reward. Handles apples."""
        if code == cells.APPLE:
            self._set(row, col, cells.FLOOR)
            if self.apple_respawn_steps is not None:
                self._respawns.append((self._phase_step + self.apple_respawn_steps, row, col))
            return self._apple_value
        return 0.0

    def _blocked(self, code: int, row: int, col: int) -> bool:
        """The agent walked into an impassable cell; True if it stays impassable."""
        return True

    # ----------------------------------------------------------------------------------------
    # Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        gym.Env.reset(self, seed=seed)  # seeds self.np_random; MiniGridEnv.reset is not used
        self.step_count = 0
        self.carrying = None
        self._last_phase_reward = 0.0
        self._succeeded = 0.0  # set by the subclass's rules during phase 3
        self._respawns: deque[tuple[int, int, int]] = deque()
        # Draw order is fixed (hidden facts, apple value, rooms 1-2-3), so a seed fixes all.
        self._new_episode()
        self._apple_value = self._draw_apple_value()
        self._rooms = [
            self._padded(*self._explore_room()),
            self._padded(*self._apple_room_layout()),
            self._padded(*self._reward_room()),
        ]
        self._enter_phase(1)
        if self.render_mode == "human":
            self.render()
        return self._obs(), {"phase": 1}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = int(action)
        if not 0 <= action < self.action_space.n:
            raise ValueError(f"action must be in [0, {self.action_space.n}), got {action}")
        self.step_count += 1
        self._phase_step += 1
        reward = self._act(action)
        if self.phase == 3:
            self._last_phase_reward += reward
        while self._respawns and self._respawns[0][0] <= self._phase_step:
            _, row, col = self._respawns.popleft()
            self._set(row, col, cells.APPLE)
        if self.phase < 3 and self._phase_step >= self._phase_lengths[self.phase - 1]:
            # A zero-length distractor phase is skipped.
            self._enter_phase(3 if self.phase == 2 or self.distractor_steps == 0 else 2)
        # The episode always runs its full length, then ends as `episode_end` says.
        ended = self.step_count >= self.max_steps
        info: dict[str, Any] = {"phase": self.phase}
        if ended:
            info["last_phase_reward"] = self._last_phase_reward
            info["success"] = self._succeeded
        if self.render_mode == "human":
            self.render()
        terminal = ended and self.episode_end == "terminated"
        return self._obs(), reward, terminal, ended and not terminal, info

    # ----------------------------------------------------------------------------------------
    # State

    @property
    def phase_name(self) -> str:
        return PHASE_NAMES[self.phase - 1]

    @property
    def phase_steps_left(self) -> int:
        return self._phase_lengths[self.phase - 1] - self._phase_step

    def _draw_apple_value(self) -> float:
        low, high = self.apple_reward
        # One coin flip per episode, as in the release's training setup; none for a number.
        return low if low == high else (low, high)[int(self.np_random.integers(2))]

    def _apple_room_layout(self) -> tuple[np.ndarray, tuple[int, int], int]:
        codes = self._apple_room.copy()
        keep = self.np_random.choice(len(APPLE_CELLS), size=self.num_apples, replace=False)
        for i in keep:
            codes[APPLE_CELLS[i]] = cells.APPLE
        return codes, APPLE_ROOM_START, NORTH

    def _padded(self, codes, start, direction):
        padded = np.pad(codes, self._pad, constant_values=self._pad_code)
        return padded, start, direction

    def _enter_phase(self, phase: int) -> None:
        self.phase = phase
        self._phase_step = 0
        self._board, (self._row, self._col), self.agent_dir = self._rooms[phase - 1]
        self.agent_pos = (self._col, self._row)  # minigrid's (x, y)

    def _set(self, row: int, col: int, code: int) -> None:
        self._board[row + self._pad, col + self._pad] = code

    def _act(self, action: int) -> float:
        if self._top_down:
            self.agent_dir = TOP_DOWN_ACTION_DIRS[action]
        elif action == 0:
            self.agent_dir = (self.agent_dir - 1) % 4
            return 0.0
        elif action == 1:
            self.agent_dir = (self.agent_dir + 1) % 4
            return 0.0
        d_row, d_col = DIR_TO_STEP[self.agent_dir]
        row, col = self._row + d_row, self._col + d_col
        code = int(self._board[row + self._pad, col + self._pad])
        if not cells.PASSABLE[code] and self._blocked(code, row, col):
            return 0.0
        self._row, self._col = row, col
        self.agent_pos = (col, row)
        # Read again: _blocked may have changed the cell (an opened door).
        code = int(self._board[row + self._pad, col + self._pad])
        return 0.0 if code == cells.FLOOR else self._enter(code, row, col)

    # ----------------------------------------------------------------------------------------
    # Observations

    def _view_window(self) -> tuple[int, int]:
        """Top-left (row, col) in room coordinates of the square the agent sees."""
        v, half = self.view_size, self.view_size // 2
        row, col = self._row, self._col
        if self._top_down:
            return row - half, col - half
        # Minigrid's partial view: v cells ahead, v//2 to either side.
        return (
            (row - half, col),  # east
            (row, col - half),  # south
            (row - half, col - v + 1),  # west
            (row - v + 1, col - half),  # north
        )[self.agent_dir]

    def view_codes(self) -> tuple[np.ndarray, tuple[int, int]]:
        """Cell codes the agent sees, oriented as observed, and the agent's (row, col) in it."""
        v = self.view_size
        top, left = self._view_window()
        window = self._board[top + self._pad : top + self._pad + v, left + self._pad : left + self._pad + v]
        if self._top_down:
            return window, (v // 2, v // 2)
        # Turn the view so that the agent looks up: minigrid rotates left agent_dir + 1 times.
        return np.rot90(window, (self.agent_dir + 1) % 4), (v - 1, v // 2)

    def _obs(self) -> np.ndarray:
        window, agent = self.view_codes()
        obs = cells.RGB[window]  # fancy indexing copies: the observation owns its memory
        obs[agent] = cells.RGB[cells.AGENT]
        return obs

    def minigrid_image(self) -> np.ndarray:
        """The view in minigrid's encoding: ``image[x, y] = (OBJECT_IDX, COLOR_IDX, STATE)``.

        Egocentric: identical to minigrid's ``gen_obs()["image"]`` with see-through walls
        (the agent's cell is empty: what it carries is not shown, since remembering that it
        holds the key is Key-to-Door's task). Top-down: the agent's cell is encoded as
        minigrid's ``FullyObsWrapper`` does, ``(agent, red, direction)``.
        """
        window, (row, col) = self.view_codes()
        image = cells.MINIGRID_ENCODING[window]
        image[row, col] = (
            (OBJECT_TO_IDX["agent"], COLOR_TO_IDX["red"], self.agent_dir)
            if self._top_down
            else (OBJECT_TO_IDX["empty"], 0, 0)
        )
        return image.transpose(1, 0, 2)  # minigrid indexes images by (x, y)

    # ----------------------------------------------------------------------------------------
    # Minigrid interop and rendering

    @property
    def grid(self) -> Grid:
        """A minigrid ``Grid`` of the current room, built on demand (a snapshot: edits to it
        do not change the environment)."""
        board = getattr(self, "_board", None)
        if board is None:
            return Grid(WIDTH, HEIGHT)
        p = self._pad
        return self._grid_from(board[p : p + HEIGHT, p : p + WIDTH])

    @grid.setter
    def grid(self, value: Grid) -> None:
        pass  # MiniGridEnv.__init__ assigns an empty Grid; the rooms live in self._board

    @staticmethod
    def _grid_from(codes: np.ndarray) -> Grid:
        height, width = codes.shape
        grid = Grid(width, height)
        for row in range(height):
            for col in range(width):
                obj = cells.world_object(int(codes[row, col]))
                if obj is not None:
                    grid.set(col, row, obj)
        return grid

    def get_frame(
        self, highlight: bool = True, tile_size: int = TILE_PIXELS, agent_pov: bool = False
    ) -> np.ndarray:
        """RGB frame of the room (or of the agent's view, ``agent_pov``), minigrid-style."""
        if agent_pov:
            window, (row, col) = self.view_codes()
            grid = self._grid_from(window)
            direction = self.agent_dir if self._top_down else NORTH
            return grid.render(tile_size, (col, row), direction)
        mask = np.zeros((WIDTH, HEIGHT), dtype=bool)  # minigrid masks are (x, y)
        if highlight:
            top, left = self._view_window()
            v = self.view_size
            mask[max(left, 0) : max(left + v, 0), max(top, 0) : max(top + v, 0)] = True
        return self.grid.render(tile_size, self.agent_pos, self.agent_dir, highlight_mask=mask)

    def render(self) -> np.ndarray | None:
        img = self.get_frame(self.highlight, self.tile_size, self.agent_pov)
        if self.render_mode == "rgb_array":
            return img
        if self.render_mode == "human":
            self._show(img)
        return None

    def _show(self, img: np.ndarray) -> None:
        # Minigrid's human mode stretches every frame to a square; these rooms are 11 x 7, so
        # keep the aspect ratio and use the text line for the phase and its timer.
        import pygame
        import pygame.freetype

        scale = self.screen_size / max(img.shape[:2])
        size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
        band = 40
        if self.window is None:
            pygame.freetype.init()
            pygame.display.init()
            self.window = pygame.display.set_mode((size[0], size[1] + band))
            pygame.display.set_caption(type(self).__name__)
        if self.clock is None:
            self.clock = pygame.time.Clock()
        surf = pygame.surfarray.make_surface(np.transpose(img, (1, 0, 2)))
        self.window.fill((255, 255, 255))
        self.window.blit(pygame.transform.scale(surf, size), (0, 0))
        # The font bundled with pygame(-ce): SysFont would search the system (and warn) for it.
        font = pygame.freetype.Font(None, 20)
        text = f"phase {self.phase}/3 ({self.phase_name}): {self.phase_steps_left} steps left"
        font.render_to(self.window, (10, size[1] + 10), text, size=20)
        pygame.event.pump()
        self.clock.tick(self.metadata["render_fps"])
        pygame.display.flip()

    # ----------------------------------------------------------------------------------------
    # Argument checks shared by the subclasses

    @staticmethod
    def _check_apple_reward(value: Any) -> tuple[float, float]:
        if _is_real(value):
            return float(value), float(value)
        if (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(_is_real(v) for v in value)
        ):
            return float(value[0]), float(value[1])
        raise ValueError(
            "apple_reward must be a finite number, or a pair of them (one of the two is drawn "
            f"per episode), got {value!r}"
        )
