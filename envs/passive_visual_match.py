from __future__ import annotations

import numpy as np

from envs import cells
from envs.three_phase import WEST
from envs.visual_match import VisualMatchEnv

# Phase 1: a short corridor; the colour (C) ends it, right next to the agent's start (S).
PASSIVE_EXPLORE_ROOM = (
    "           ",
    "           ",
    "  #######  ",
    "  CS....#  ",
    "  #######  ",
    "           ",
    "           ",
)
COLOUR_CELL = cells.cells_marked(PASSIVE_EXPLORE_ROOM, "C")[0]
START_CELL = cells.cells_marked(PASSIVE_EXPLORE_ROOM, "S")[0]


class PassiveVisualMatchEnv(VisualMatchEnv):
    """
    ## Description

    Passive Visual Match (Hung et al. 2018, "Optimizing agent behavior over long time scales
    by transporting value") tests memory alone. Three phases in three rooms, each lasting its
    full length:

    1. **explore** (`explore_steps`, default 15): the agent starts in a short corridor next
       to a square of one of three colours (red, green, blue, drawn per episode). The colour is
       in its first observation, always; nothing has to be found.
    2. **distractor** (`distractor_steps`, default 90; the delay): an apple room. Apples pay
       reward; the colour is never shown.
    3. **reward** (`reward_steps`, default 15): three squares, one of each colour. Touching
       the square of the phase-1 colour gives `final_reward` (10); another gives
       `wrong_reward` (0). The first touch counts; all squares then vanish.

    The 2-D release (pycolab) has only Active Visual Match and Key-to-Door; this passive task
    follows the 3-D release ("a colour square right in front of the agent") on the 2-D
    release's maps, view and rewards.

    ## Mission Space

    "remember the colour, then touch the square of that colour"

    ## Action Space

    Default (`view="top_down"`, the release's actions; no no-op):

    | Num | Name  | Action          |
    |-----|-------|-----------------|
    | 0   | north | Move up         |
    | 1   | south | Move down       |
    | 2   | west  | Move left       |
    | 3   | east  | Move right      |

    With `view="egocentric"` (minigrid's first three actions):

    | Num | Name    | Action       |
    |-----|---------|--------------|
    | 0   | left    | Turn left    |
    | 1   | right   | Turn right   |
    | 2   | forward | Move forward |

    ## Observation Encoding

    A `Box(0, 255, (view_size, view_size, 3), uint8)` RGB image, one pixel per cell, in the
    release's palette (floor (204, 204, 204), wall (26, 26, 26), agent (229, 149, 110),
    apple (140, 179, 0)); the three colours are pure red, green and blue.

    - `view="top_down"` (default, `view_size` 5): the release's window centred on the agent,
      north up, padded with floor outside the room.
    - `view="egocentric"` (`view_size` 7): minigrid's partial view, turned so the agent (at
      the bottom centre) looks up; padded with walls; walls do not occlude.

    The default is the release's setup: with a 5x5 window the task is the one the published
    agents were trained on, and a single image Box is what an RLlib RLModule encodes with a
    small CNN (or, flattened to 75 values, an MLP); divide by 255 in the model.
    `envs.wrappers.MinigridObsWrapper` gives minigrid's dict form instead
    (`image` as `(OBJECT_IDX, COLOR_IDX, STATE)` triples, `direction`, `mission`).

    `info["phase"]` (1, 2 or 3) is the phase of the returned observation; a step's reward
    belongs to the phase its action was taken in.

    ## Rewards

    - Each apple picked in phase 2: `apple_reward` (default 1; a pair such as `(1, 10)`
      draws one of the two per episode, as in the release's training setup). Apples respawn
      `apple_respawn_steps` (20) steps after they are picked.
    - The first square touched in phase 3: `final_reward` (10) if it has the phase-1 colour,
      else `wrong_reward` (0).

    At the last step `info["last_phase_reward"]` holds the phase-3 reward (10 correct, 0 wrong
    or none; chance 10/3) and `info["success"]` 1.0 if the correct colour was touched first,
    else 0.0. The total return mixes in apples and is not the metric.

    ## Termination

    After exactly `explore_steps + distractor_steps + reward_steps` steps (120 by default),
    never earlier: truncated by default, terminated with `episode_end="terminated"` as in
    DeepMind's release (why it matters: `envs.three_phase.EPISODE_ENDS`).

    ## Registered Configurations

    - `memory_agents/PassiveVisualMatch-v0` (delay 90, the release's default)
    - `memory_agents/PassiveVisualMatch-Delay15-v0`
    - `memory_agents/PassiveVisualMatch-Delay30-v0`
    - `memory_agents/PassiveVisualMatch-Delay60-v0`

    Every constant is a keyword argument of `gym.make`: `explore_steps`, `distractor_steps`
    (0 allowed), `reward_steps`, `num_apples` (0-22), `apple_reward`, `apple_respawn_steps`
    (None: never), `final_reward`, `wrong_reward`, `colour_order` (the squares'
    colours from the left: `"instance"`, the default and the release's rule, draws one order
    per environment instance whenever it is reset with a seed; `"episode"` draws one per
    episode; `"fixed"` is always red, green, blue, the easier variant), `episode_end`, `view`,
    `view_size`.
    """

    def _explore_room(self) -> tuple[np.ndarray, tuple[int, int], int]:
        codes = cells.parse_map(PASSIVE_EXPLORE_ROOM)
        codes[COLOUR_CELL] = cells.COLOUR_WALL[self._target]
        # Facing the colour, so the egocentric view also starts with it in sight.
        return codes, START_CELL, WEST
