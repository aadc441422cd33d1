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


class VisualMatchEnv(ThreePhaseEnv):
    """Base of the two Visual Match tasks; subclasses build the explore room."""

    def __init__(
        self,
        *,
        final_reward: float = 10.0,
        wrong_reward: float = 0.0,
        shuffle_colours: bool = True,
        **kwargs: Any,
    ):
        self.wrong_reward = check_real("wrong_reward", wrong_reward)
        if not isinstance(shuffle_colours, (bool, np.bool_)):
            raise ValueError(f"shuffle_colours must be True or False, got {shuffle_colours!r}")
        self.shuffle_colours = bool(shuffle_colours)
        super().__init__(final_reward=final_reward, **kwargs)
        self._reward_room_codes = cells.parse_map(REWARD_ROOM)

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

    def _new_episode(self) -> None:
        self._target = int(self.np_random.integers(3))
        # Fixed order unless shuffled: the release fixes it per environment instance.
        self._square_colours = (
            tuple(int(i) for i in self.np_random.permutation(3))
            if self.shuffle_colours
            else (0, 1, 2)
        )

    def _reward_room(self) -> tuple[np.ndarray, tuple[int, int], int]:
        codes = self._reward_room_codes.copy()
        for cell, colour in zip(SQUARE_CELLS, self._square_colours):
            codes[cell] = cells.COLOUR_SQUARE[colour]
        return codes, REWARD_ROOM_START, NORTH

    def _enter(self, code: int, row: int, col: int) -> float:
        if code not in cells.COLOUR_SQUARE:
            return super()._enter(code, row, col)
        # The first touch counts: every square vanishes and the phase runs to its end.
        for square_row, square_col in SQUARE_CELLS:
            self._set(square_row, square_col, cells.FLOOR)
        if code == cells.COLOUR_SQUARE[self._target]:
            self._succeeded = 1.0
            return self.final_reward
        return self.wrong_reward
