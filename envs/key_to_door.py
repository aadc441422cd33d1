from __future__ import annotations

from typing import Any

import numpy as np

from envs import cells
from envs.three_phase import NORTH, ThreePhaseEnv

# Phase 1: the Active Visual Match rooms; the key lies on one of the 10 upper-room cells (k),
# the agent starts on one of the 10 lower-room cells (s).
KEY_ROOM = (
    "  #######  ",
    "  #kkkkk#  ",
    "  #kkkkk#  ",
    "  ##...##  ",
    "  #sssss#  ",
    "  #sssss#  ",
    "  #######  ",
)
KEY_CELLS = cells.cells_marked(KEY_ROOM, "k")
START_CELLS = cells.cells_marked(KEY_ROOM, "s")

# Phase 3: a small room; the door (D) opens only for an agent holding the key, and the
# treasure (T) behind it pays the final reward. 4 steps from the start (S), as the centre
# square of Visual Match.
DOOR_ROOM = (
    "###########",
    "###..T..###",
    "###.....###",
    "#####D#####",
    "###.....###",
    "###..S..###",
    "###########",
)
DOOR_CELL = cells.cells_marked(DOOR_ROOM, "D")[0]
TREASURE_CELL = cells.cells_marked(DOOR_ROOM, "T")[0]
DOOR_ROOM_START = cells.cells_marked(DOOR_ROOM, "S")[0]


class KeyToDoorEnv(ThreePhaseEnv):
    """
    ## Description

    Key-to-Door (Hung et al. 2018, "Optimizing agent behavior over long time scales by
    transporting value"; the second 2-D pycolab task) tests credit assignment over a delay:
    an action in phase 1 that pays nothing is what makes phase 3 pay. Three phases in three
    rooms, each lasting its full length:

    1. **explore** (`explore_steps`, default 15): two small rooms; a key lies on one of the
       10 cells of the upper room, uniformly; the agent starts on one of the 10 cells of the
       lower room. Stepping on the key picks it up (no reward). Holding it is not shown in
       any observation: the agent has to remember it.
    2. **distractor** (`distractor_steps`, default 90; the delay): an apple room. Apples pay
       reward.
    3. **reward** (`reward_steps`, default 15): a small room with a locked door. Walking
       into the door with the key opens it; the treasure behind it pays `final_reward` (10)
       and vanishes. Without the key the door stays shut.

    ## Mission Space

    "pick up the key, then open the door"

    ## Action Space

    Default (`view="top_down"`, the release's actions; no no-op):

    | Num | Name  | Action          |
    |-----|-------|-----------------|
    | 0   | north | Move up         |
    | 1   | south | Move down       |
    | 2   | west  | Move left       |
    | 3   | east  | Move right      |

    With `view="egocentric"` (minigrid's first three actions; the agent starts each phase
    facing north):

    | Num | Name    | Action       |
    |-----|---------|--------------|
    | 0   | left    | Turn left    |
    | 1   | right   | Turn right   |
    | 2   | forward | Move forward |

    ## Observation Encoding

    A `Box(0, 255, (view_size, view_size, 3), uint8)` RGB image, one pixel per cell, in the
    release's palette (floor (204, 204, 204), wall (26, 26, 26), agent (229, 149, 110),
    apple (140, 179, 0), key (160, 82, 45), door (135, 206, 235), treasure (255, 215, 0)).

    - `view="top_down"` (default, `view_size` 5): the release's window centred on the agent,
      north up, padded with floor outside the room.
    - `view="egocentric"` (`view_size` 7): minigrid's partial view, turned so the agent (at
      the bottom centre) looks up; padded with walls; walls do not occlude.

    The default is the release's setup, and a single image Box is what an RLlib RLModule
    encodes with a small CNN (or, flattened, an MLP); divide by 255 in the model.
    `envs.wrappers.MinigridObsWrapper` gives minigrid's dict form instead.

    `info["phase"]` (1, 2 or 3) is the phase of the returned observation; a step's reward
    belongs to the phase its action was taken in.

    ## Rewards

    - Each apple picked in phase 2: `apple_reward` (default 1; a pair such as `(1, 10)`
      draws one of the two per episode). Apples respawn `apple_respawn_steps` (20) steps
      after they are picked.
    - The treasure in phase 3: `final_reward` (10).

    At the last step `info["last_phase_reward"]` holds the phase-3 reward and
    `info["success"]` 1.0 if the treasure was reached, else 0.0.

    ## Termination

    After exactly `explore_steps + distractor_steps + reward_steps` steps (120 by default),
    never earlier: truncated by default, terminated with `episode_end="terminated"` as in
    DeepMind's release (why it matters: `envs.three_phase.EPISODE_ENDS`).

    ## Registered Configurations

    - `memory_agents/KeyToDoor-v0` (delay 90, the release's default)
    - `memory_agents/KeyToDoor-Delay15-v0`
    - `memory_agents/KeyToDoor-Delay30-v0`
    - `memory_agents/KeyToDoor-Delay60-v0`

    Every constant is a keyword argument of `gym.make`: `explore_steps`, `distractor_steps`
    (0 allowed), `reward_steps`, `num_apples` (0-22), `apple_reward`, `apple_respawn_steps`
    (None: never), `final_reward`, `episode_end`, `view`, `view_size`.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._key_room = cells.parse_map(KEY_ROOM)
        self._door_room = cells.parse_map(DOOR_ROOM)

    @staticmethod
    def _gen_mission() -> str:
        return "pick up the key, then open the door"

    def _new_episode(self) -> None:
        self.has_key = False

    def _explore_room(self) -> tuple[np.ndarray, tuple[int, int], int]:
        codes = self._key_room.copy()
        codes[KEY_CELLS[int(self.np_random.integers(len(KEY_CELLS)))]] = cells.KEY
        start = START_CELLS[int(self.np_random.integers(len(START_CELLS)))]
        return codes, start, NORTH

    def _reward_room(self) -> tuple[np.ndarray, tuple[int, int], int]:
        codes = self._door_room.copy()
        codes[DOOR_CELL] = cells.DOOR
        codes[TREASURE_CELL] = cells.TREASURE
        return codes, DOOR_ROOM_START, NORTH

    def _enter(self, code: int, row: int, col: int) -> float:
        if code == cells.KEY:
            self.has_key = True
            self._set(row, col, cells.FLOOR)
            return 0.0
        if code == cells.TREASURE:
            self._set(row, col, cells.FLOOR)
            self._succeeded = 1.0
            return self.final_reward
        return super()._enter(code, row, col)

    def _blocked(self, code: int, row: int, col: int) -> bool:
        if code == cells.DOOR and self.has_key:
            self._set(row, col, cells.FLOOR)  # opened: the agent walks through this step
            return False
        return True
