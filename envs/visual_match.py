"""What Passive and Active Visual Match share: the target colour and the reward room."""

from __future__ import annotations

from typing import Any

import numpy as np

from envs import cells
from envs.three_phase import NORTH, ThreePhaseEnv, check_real

# Phase 3, as released: three squares in row 1 at columns 2, 5, 8 ("c"); the agent starts in
# the bottom alcove (S), 4 steps from the centre square and 7 from a side one.
REWARD_ROOM = (
    "###########",
    "#.c..c..c.#",
    "#.........#",
    "#.........#",
    "####...####",
    "####.S.####",
    "###########",
)
SQUARE_CELLS = cells.cells_marked(REWARD_ROOM, "c")
REWARD_ROOM_START = cells.cells_marked(REWARD_ROOM, "S")[0]


#: How the reward room's squares get their colours (left to right):
#: - "instance": one order per environment instance, drawn whenever the env is reset with a
#:   seed and kept across resets without one. DeepMind's release does this: its
#:   `Game.__init__` draws the colour of each square once per game
#:   (tvt/pycolab/active_visual_match.py, lines 79-81, `get_shuffled_symbol_colour_map`),
#:   `make_episode` draws only the target, and every environment of the training batch
#:   builds its own game from its own `np.random.RandomState()` (tvt/pycolab/env.py, line 44).
#:   Vectorised envs seeded `seed + i` therefore differ, as the release's batch of 16 does.
#: - "episode": a new order every episode.
#: - "fixed": red, green, blue from the left; the easy variant (the agent can remember
#:   "left" instead of a colour).
COLOUR_ORDERS = ("instance", "episode", "fixed")


class VisualMatchEnv(ThreePhaseEnv):
    """Base of the two Visual Match tasks; subclasses build the explore room."""

    def __init__(
        self,
        *,
        final_reward: float = 10.0,
        wrong_reward: float = 0.0,
        colour_order: str = "instance",
        **kwargs: Any,
    ):
        self.wrong_reward = check_real("wrong_reward", wrong_reward)
        if colour_order not in COLOUR_ORDERS:
            raise ValueError(f"colour_order must be one of {', '.join(map(repr, COLOUR_ORDERS))}, "
                             f"got {colour_order!r}")
        self.colour_order = colour_order
        self._instance_order: tuple[int, int, int] | None = None
        super().__init__(final_reward=final_reward, **kwargs)
        self._reward_room_codes = cells.parse_map(REWARD_ROOM)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._instance_order = None  # a seeded reset draws this instance's order again
        return super().reset(seed=seed, options=options)

    @staticmethod
    def _gen_mission() -> str:
        return "remember the colour, then touch the square of that colour"

    @property
    def target_colour(self) -> str:
        """This episode's colour to remember: ``"red"``, ``"green"`` or ``"blue"``."""
        return cells.COLOURS[self._target]

    @property
    def square_colours(self) -> tuple[str, str, str]:
        """Colours of the reward room's squares, left to right."""
        return tuple(cells.COLOURS[i] for i in self._square_colours)

    @property
    def target_square(self) -> int:
        """Position (0 left, 1 centre, 2 right) of the square with the target colour."""
        return self._square_colours.index(self._target)

    @property
    def touched_square(self) -> int | None:
        """Position (0 left, 1 centre, 2 right) of the square touched this episode, or None."""
        return self._touched

    @property
    def touch_step(self) -> int | None:
        """The phase-3 step (1 = its first) on which a square was touched, or None."""
        return self._touch_step

    def _new_episode(self) -> None:
        self._touched: int | None = None
        self._touch_step: int | None = None
        self._target = int(self.np_random.integers(3))
        if self.colour_order == "fixed":
            self._square_colours = (0, 1, 2)
        elif self.colour_order == "episode":
            self._square_colours = self._draw_order()
        else:
            if self._instance_order is None:
                self._instance_order = self._draw_order()
            self._square_colours = self._instance_order

    def _draw_order(self) -> tuple[int, int, int]:
        return tuple(int(i) for i in self.np_random.permutation(3))  # type: ignore[return-value]

    def _reward_room(self) -> tuple[np.ndarray, tuple[int, int], int]:
        codes = self._reward_room_codes.copy()
        for cell, colour in zip(SQUARE_CELLS, self._square_colours):
            codes[cell] = cells.COLOUR_SQUARE[colour]
        return codes, REWARD_ROOM_START, NORTH

    def _enter(self, code: int, row: int, col: int) -> float:
        if code not in cells.COLOUR_SQUARE:
            return super()._enter(code, row, col)
        # The first touch counts: every square vanishes and the phase runs to its end.
        self._touched = SQUARE_CELLS.index((row, col))
        self._touch_step = self._phase_step
        for square_row, square_col in SQUARE_CELLS:
            self._set(square_row, square_col, cells.FLOOR)
        if code == cells.COLOUR_SQUARE[self._target]:
            self._succeeded = 1.0
            return self.final_reward
        return self.wrong_reward
