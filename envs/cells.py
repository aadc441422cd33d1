"""Cell codes shared by the memory tasks, and their three looks.

The environments keep each room as a small ``uint8`` array of cell codes (the fast path: an
observation is one table lookup, ``RGB[window]``). This module owns the codes and the three
tables that give a code meaning:

- ``RGB``: the pixel colour of a cell in the agent's observation (one cell = one pixel, the
  2-D release's palette; the three match colours are pure red, green and blue);
- ``MINIGRID_ENCODING``: minigrid's ``(OBJECT_IDX, COLOR_IDX, STATE)`` triple, used by
  :class:`envs.wrappers.MinigridObsWrapper`;
- :func:`world_object`: the minigrid ``WorldObj`` that draws the cell when rendering.
"""

from __future__ import annotations

import numpy as np
from minigrid.core.world_object import Ball, Door, Goal, Key, Wall, WorldObj

FLOOR = 0  # walkable floor, also the padding outside a map (the release pads with background)
WALL = 1
AGENT = 2  # only ever written into observations, never into a room
APPLE = 3
KEY = 4
DOOR = 5  # locked; opens (becomes FLOOR) when the agent walks into it holding the key
TREASURE = 6  # Key-to-Door's final reward, behind the door
COLOUR_WALL = (7, 8, 9)  # phase 1: the colour to remember, on an impassable wall cell
COLOUR_SQUARE = (10, 11, 12)  # phase 3: the three squares the agent chooses between
NUM_CODES = 13

# The three match colours, in code order: COLOUR_WALL[i] and COLOUR_SQUARE[i] show COLOURS[i].
COLOURS = ("red", "green", "blue")
COLOUR_RGB = ((255, 0, 0), (0, 255, 0), (0, 0, 255))

# The release's palette (pycolab colours in 0..1000, scaled to 0..255). None of these is close
# to a match colour, so "the target colour is never visible" is a pixel-exact statement.
_RGB = {
    FLOOR: (204, 204, 204),
    WALL: (26, 26, 26),
    AGENT: (229, 149, 110),
    APPLE: (140, 179, 0),
    KEY: (160, 82, 45),
    DOOR: (135, 206, 235),
    TREASURE: (255, 215, 0),
}
for _i, _rgb in enumerate(COLOUR_RGB):
    _RGB[COLOUR_WALL[_i]] = _rgb
    _RGB[COLOUR_SQUARE[_i]] = _rgb
RGB = np.array([_RGB[code] for code in range(NUM_CODES)], dtype=np.uint8)

# Cells the agent may step onto (doors are handled by the Key-to-Door rules).
PASSABLE = tuple(
    code in (FLOOR, APPLE, KEY, TREASURE, *COLOUR_SQUARE) for code in range(NUM_CODES)
)


def world_object(code: int) -> WorldObj | None:
    """The minigrid object that stands for a cell code (``None`` is minigrid's empty cell)."""
    if code == FLOOR or code == AGENT:
        return None
    if code == WALL:
        return Wall("grey")
    if code == APPLE:
        # Yellow, not green: a green ball in the apple room would read as the target colour.
        return Ball("yellow")
    if code == KEY:
        return Key("blue")
    if code == DOOR:
        return Door("blue", is_open=False, is_locked=True)
    if code == TREASURE:
        return Goal("green")
    if code in COLOUR_WALL:
        return Wall(COLOURS[COLOUR_WALL.index(code)])
    if code in COLOUR_SQUARE:
        # A goal is walkable and drawn as a full tile of its colour: what a square is.
        return Goal(COLOURS[COLOUR_SQUARE.index(code)])
    raise ValueError(f"unknown cell code {code}")


def _encoding(code: int) -> tuple[int, int, int]:
    obj = world_object(code)
    return (1, 0, 0) if obj is None else obj.encode()  # (1, 0, 0): minigrid's "empty"


MINIGRID_ENCODING = np.array([_encoding(code) for code in range(NUM_CODES)], dtype=np.uint8)


def parse_map(rows: tuple[str, ...]) -> np.ndarray:
    """An ASCII map -> array of cell codes. ``#`` wall, ``.`` and `` `` floor, others -> FLOOR.

    Letters mark candidate cells (apples, keys, starts); callers read them with
    :func:`cells_marked` and place objects themselves, so the map stays a picture of the room.
    """
    if len({len(row) for row in rows}) != 1:
        raise ValueError("map rows must have equal length")
    return np.array([[WALL if ch == "#" else FLOOR for ch in row] for row in rows], dtype=np.uint8)


def cells_marked(rows: tuple[str, ...], marks: str) -> tuple[tuple[int, int], ...]:
    """(row, column) of every character of ``marks`` in an ASCII map, in reading order."""
    return tuple((r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in marks)
