"""Scripted agents show that memory is exactly what separates success from chance.

Each agent knows the published room layouts and reads its own position from the env
(navigation is not under test), but it learns colours, squares and keys only from its
observations. An agent that remembers the phase-1 colour must succeed in >= 99% of 300
episodes; the same agent with phase 1 ignored must succeed in 33% +- 5%.
"""

from __future__ import annotations

import functools
from collections import deque

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs import cells
from envs.active_visual_match import ACTIVE_EXPLORE_ROOM
from envs.key_to_door import DOOR_ROOM, KEY_ROOM
from envs.visual_match import REWARD_ROOM

NORTH, SOUTH, WEST, EAST = range(4)  # the top-down actions
MOVES = {NORTH: (-1, 0), SOUTH: (1, 0), WEST: (0, -1), EAST: (0, 1)}
EPISODES = 300
HALF = 2  # the 5x5 window's half width


@functools.lru_cache(maxsize=None)
def distances(room: tuple[str, ...], goal: tuple[int, int], blocked: str = "#") -> np.ndarray:
    """Steps from every cell to ``goal`` (BFS); cells in ``blocked`` are walls, except the goal."""
    dist = np.full((len(room), len(room[0])), np.inf)
    dist[goal] = 0
    queue = deque([goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES.values():
            nr, nc = r + dr, c + dc
            if 0 <= nr < len(room) and 0 <= nc < len(room[0]) and room[nr][nc] not in blocked:
                if dist[nr, nc] == np.inf:
                    dist[nr, nc] = dist[r, c] + 1
                    queue.append((nr, nc))
    return dist


def move_towards(room, position, goal, blocked="#"):
    dist = distances(room, goal, blocked)
    r, c = position
    return min(MOVES, key=lambda a: dist[r + MOVES[a][0], c + MOVES[a][1]])


def visible(obs: np.ndarray, position, rgb) -> tuple[int, int] | None:
    """Room (row, col) of a cell of colour ``rgb`` in the window, if one is in view."""
    hits = np.argwhere((obs == rgb).all(-1))
    if len(hits) == 0:
        return None
    return position[0] + int(hits[0][0]) - HALF, position[1] + int(hits[0][1]) - HALF


def position(env):
    col, row = env.unwrapped.agent_pos
    return row, col


# Windows from these four cells cover every wall of the Active room: a search of <= 8 steps.
SEARCH_TOUR = ((4, 4), (2, 4), (2, 6), (4, 6))
# In the reward room these cells bring the squares into view: centre, left, right.
SQUARE_TOUR = ((3, 5), (2, 4), (2, 6))


class VisualMatchAgent:
    """Remembers the first match colour it sees in phase 1, walks to that square in phase 3.

    ``search``: walk the search tour in phase 1 until a colour is in view (Active).
    ``remember=False``: ignore phase 1 and pick a colour at random in phase 3.
    """

    def __init__(self, search: bool, remember: bool, seed: int):
        self.search, self.remember = search, remember
        self.rng = np.random.default_rng(seed)

    def reset(self, obs, env):
        self.colour = None
        tour = SEARCH_TOUR if position(env)[1] <= 5 else SEARCH_TOUR[::-1]  # nearer end first
        self.tour = list(tour)
        self.square_tour = list(SQUARE_TOUR)
        self.observe(obs, 1, env)

    def observe(self, obs, phase, env):
        if phase == 1 and self.remember and self.colour is None:
            for i, rgb in enumerate(cells.COLOUR_RGB):
                if visible(obs, position(env), rgb) is not None:
                    self.colour = i

    def act(self, obs, phase, env):
        here = position(env)
        if phase == 1:
            if self.search and self.colour is None:
                while self.tour and self.tour[0] == here:
                    self.tour.pop(0)
                if self.tour:
                    return move_towards(ACTIVE_EXPLORE_ROOM, here, self.tour[0])
            return SOUTH
        if phase == 2:
            return SOUTH  # apples do not matter here
        if self.colour is None:
            self.colour = int(self.rng.integers(3))  # chance: the colour was never seen
        square = visible(obs, here, cells.COLOUR_RGB[self.colour])
        if square is not None:
            # Other squares are obstacles: touching one would end the choice.
            return move_towards(REWARD_ROOM, here, square, blocked="#c")
        while self.square_tour and self.square_tour[0] == here:
            self.square_tour.pop(0)
        return move_towards(REWARD_ROOM, here, self.square_tour[0], blocked="#c") if self.square_tour else NORTH


class KeyAgent:
    """Looks for the key in phase 1 (if ``fetch``) and walks to the door in phase 3."""

    def __init__(self, fetch: bool):
        self.fetch = fetch

    def reset(self, obs, env):
        self.tour = [(2, 4), (2, 6)]

    def observe(self, obs, phase, env):
        pass

    def act(self, obs, phase, env):
        here = position(env)
        if phase == 1 and self.fetch:
            key = visible(obs, here, cells.RGB[cells.KEY])
            if key is not None:
                return move_towards(KEY_ROOM, here, key)
            while self.tour and self.tour[0] == here:
                self.tour.pop(0)
            return move_towards(KEY_ROOM, here, self.tour[0]) if self.tour else NORTH
        if phase == 3:
            return move_towards(DOOR_ROOM, here, (1, 5))
        return SOUTH


def success_rate(env_id, agent, episodes=EPISODES, **kwargs):
    env = gym.make(env_id, **kwargs)
    successes = []
    for seed in range(episodes):
        obs, info = env.reset(seed=seed)
        agent.reset(obs, env)
        truncated = False
        while not truncated:
            obs, _, _, truncated, info = env.step(agent.act(obs, info["phase"], env))
            agent.observe(obs, info["phase"], env)
        successes.append(info["success"])
        assert info["last_phase_reward"] == 10.0 * info["success"]
    return float(np.mean(successes))


@pytest.mark.parametrize(
    "env_id, search",
    [("memory_agents/PassiveVisualMatch-v0", False), ("memory_agents/ActiveVisualMatch-v0", True)],
)
def test_memory_separates_success_from_chance(env_id, search):
    remembering = success_rate(env_id, VisualMatchAgent(search=search, remember=True, seed=0))
    forgetting = success_rate(env_id, VisualMatchAgent(search=search, remember=False, seed=0))
    print(f"{env_id}: remembers {remembering:.3f}, ignores phase 1 {forgetting:.3f}")
    assert remembering >= 0.99
    assert abs(forgetting - 1 / 3) <= 0.05


def test_active_needs_the_search():
    # Without looking, the colour is in view at the start only ~30% of the time; the rest is
    # guessing (1/3): ~0.3 + 0.7 / 3 ~ 0.53. The search is what lifts it to ~1.
    rate = success_rate(
        "memory_agents/ActiveVisualMatch-v0", VisualMatchAgent(search=False, remember=True, seed=0)
    )
    assert 0.42 < rate < 0.65


def test_key_to_door_needs_the_key():
    assert success_rate("memory_agents/KeyToDoor-v0", KeyAgent(fetch=True), episodes=100) >= 0.99
    assert success_rate("memory_agents/KeyToDoor-v0", KeyAgent(fetch=False), episodes=100) == 0.0


def test_fixed_colour_order_is_also_chance_without_memory():
    # With the order fixed a guesser is still at chance: the target colour is uniform.
    rate = success_rate(
        "memory_agents/PassiveVisualMatch-v0",
        VisualMatchAgent(search=False, remember=False, seed=1),
        colour_order="fixed",
    )
    assert abs(rate - 1 / 3) <= 0.05
