"""Tests of the memory-task environments (envs/), in the manner of minigrid's tests/test_envs.py.

Parametrised over every registered id; scripted agents are in tests/test_envs_agents.py.
"""

from __future__ import annotations

import copy
import importlib
import os
import pickle
import subprocess
import sys
import warnings

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minigrid.minigrid_env import MiniGridEnv
from minigrid.wrappers import ImgObsWrapper

import envs
from envs import cells
from envs.active_visual_match import START_CELLS, WALL_CELLS
from envs.three_phase import APPLE_CELLS

ALL_IDS = envs.REGISTERED_IDS
BASE_IDS = [i for i in ALL_IDS if "Delay" not in i]
VIEWS = ("top_down", "egocentric")
COLOUR_RGB = np.array(cells.COLOUR_RGB, dtype=np.uint8)


def rollout(env, seed, actions):
    """Observations, rewards, terminations, truncations and infos of one seeded episode."""
    obs, info = env.reset(seed=seed)
    trace = [(obs, info)]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return trace


def assert_same_trace(a, b):
    assert len(a) == len(b)
    for step_a, step_b in zip(a, b):
        for x, y in zip(step_a, step_b):
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y)
            else:
                assert x == y


def has_match_colour(obs):
    return bool((obs.reshape(-1, 1, 3) == COLOUR_RGB[None]).all(-1).any())


# ----------------------------------------------------------------------------------------------
# Registration


def test_registers_every_task_and_preset():
    for task in ("PassiveVisualMatch", "ActiveVisualMatch", "KeyToDoor"):
        for suffix in ("", "-Delay15", "-Delay30", "-Delay60"):
            assert f"memory_agents/{task}{suffix}-v0" in gym.registry
    assert len(ALL_IDS) == 12
    assert gym.make("memory_agents/KeyToDoor-Delay30-v0").unwrapped.distractor_steps == 30


def test_registration_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium warns when an id is registered twice
        importlib.reload(envs)
        envs.register_envs()


def test_module_colon_id_works_without_import():
    code = (
        "import gymnasium as gym, sys; "
        "env = gym.make('envs:memory_agents/ActiveVisualMatch-v0'); "
        "assert 'envs' in sys.modules; print(env.reset(seed=0)[0].shape)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert out.stdout.strip() == "(5, 5, 3)"


# ----------------------------------------------------------------------------------------------
# Gymnasium's checks, determinism, rendering, copies: every id, both views


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_check_env(env_id, view):
    for render_mode in (None, "rgb_array"):
        env = gym.make(env_id, view=view, render_mode=render_mode)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped, skip_render_check=render_mode is None)
        assert [str(w.message) for w in caught] == []
        env.close()


def same_trace(a, b):
    try:
        assert_same_trace(a, b)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_seeded_determinism(env_id, view):
    env = gym.make(env_id, view=view)
    actions = np.random.default_rng(1).integers(env.action_space.n, size=env.unwrapped.max_steps)
    first = rollout(env, 7, actions)
    assert len(first) == env.unwrapped.max_steps + 1
    assert_same_trace(first, rollout(gym.make(env_id, view=view), 7, actions))
    assert_same_trace(first, rollout(env, 7, actions))  # same instance, re-seeded
    # The seed matters: another seed gives another episode.
    assert not all(same_trace(first, rollout(env, seed, actions)) for seed in (8, 9))


@pytest.mark.parametrize("env_id", BASE_IDS)
def test_unseeded_resets_continue_the_seeded_stream(env_id):
    env = gym.make(env_id)

    def hidden_state():
        return b"".join(room.tobytes() for room, _, _ in env.unwrapped._rooms)

    env.reset(seed=0)
    states = [hidden_state()]
    for _ in range(10):
        env.reset()
        states.append(hidden_state())
    assert len(set(states)) > 5
    env.reset(seed=0)
    again = [hidden_state()]
    for _ in range(10):
        env.reset()
        again.append(hidden_state())
    assert again == states  # one seed fixes the whole sequence of episodes


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_rgb_array_render(env_id, view):
    env = gym.make(env_id, view=view, render_mode="rgb_array", tile_size=8)
    _, info = env.reset(seed=0)
    frames = {}
    for _ in range(env.unwrapped.max_steps):
        if info["phase"] not in frames:
            frames[info["phase"]] = env.render()
            pov = env.unwrapped.get_frame(tile_size=8, agent_pov=True)
            assert pov.shape == (env.unwrapped.view_size * 8,) * 2 + (3,)
        *_, info = env.step(0)
    assert sorted(frames) == [1, 2, 3]
    for frame in frames.values():
        assert frame.shape == (7 * 8, 11 * 8, 3) and frame.dtype == np.uint8
    assert not np.array_equal(frames[1], frames[3])  # each phase is its own room

@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("env_id", BASE_IDS)
def test_human_render_mode(env_id, view):
    # Human frames are paced at metadata["render_fps"] (10/s), so this runs a few steps only.
    human = gym.make(env_id, view=view, render_mode="human", screen_size=200)
    human.reset(seed=0)
    human.step(0)
    assert human.unwrapped.window is not None  # a pygame window (headless: SDL dummy driver)
    assert human.render() is None
    human.close()


@pytest.mark.parametrize("env_id", BASE_IDS)
def test_rgb_render_highlights_the_window(env_id):
    env = gym.make(env_id, render_mode="rgb_array", tile_size=8)
    env.reset(seed=0)
    plain = env.unwrapped.get_frame(highlight=False, tile_size=8)
    lit = env.unwrapped.get_frame(highlight=True, tile_size=8)
    changed = (plain != lit).any(-1)
    tiles = changed.reshape(7, 8, 11, 8).any(axis=(1, 3))
    col, row = env.unwrapped.agent_pos
    rows, cols = np.nonzero(tiles)
    assert rows.min() >= row - 2 and rows.max() <= row + 2
    assert cols.min() >= col - 2 and cols.max() <= col + 2


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_pickle_and_deepcopy_mid_episode(env_id):
    env = gym.make(env_id)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for action in rng.integers(4, size=20):
        env.step(action)
    actions = rng.integers(4, size=env.unwrapped.max_steps)
    copies = [pickle.loads(pickle.dumps(env)), copy.deepcopy(env)]
    reference = [env.step(a) for a in actions[:100]]
    for clone in copies:
        assert_same_trace(reference, [clone.step(a) for a in actions[:100]])


# ----------------------------------------------------------------------------------------------
# Episode structure


@pytest.mark.parametrize("episode_end", [None, "truncated", "terminated"])
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_episode_length_and_phases(env_id, episode_end):
    env = gym.make(env_id, **({} if episode_end is None else {"episode_end": episode_end}))
    base = env.unwrapped
    explore, delay, reward = base.explore_steps, base.distractor_steps, base.reward_steps
    _, info = env.reset(seed=0)
    phases = [info["phase"]]
    rng = np.random.default_rng(0)
    for t in range(1, explore + delay + reward + 1):
        _, _, terminated, truncated, info = env.step(rng.integers(4))
        phases.append(info["phase"])
        last = t == explore + delay + reward
        # Truncated by default; terminated (and not truncated) as the release ends it.
        assert terminated == (last and episode_end == "terminated")
        assert truncated == (last and episode_end != "terminated")
        # The outcome is reported at the last step only.
        assert ("success" in info) == last and ("last_phase_reward" in info) == last
    # Phase of each observation: the agent acts `explore` times in phase 1, and so on.
    assert phases == [1] * explore + [2] * delay + [3] * (reward + 1)
    assert info["success"] in (0.0, 1.0)


@pytest.mark.parametrize("task", ["PassiveVisualMatch", "ActiveVisualMatch", "KeyToDoor"])
@pytest.mark.parametrize("lengths", [(1, 0, 1), (3, 0, 5), (2, 7, 4), (15, 250, 15)])
def test_custom_lengths_including_zero_delay(task, lengths):
    explore, delay, reward = lengths
    env = gym.make(f"memory_agents/{task}-v0", explore_steps=explore, distractor_steps=delay, reward_steps=reward)
    _, info = env.reset(seed=0)
    phases = [info["phase"]]
    truncated, steps = False, 0
    while not truncated:
        _, _, _, truncated, info = env.step(0)
        phases.append(info["phase"])
        steps += 1
    assert steps == sum(lengths)
    assert phases == [1] * explore + [2] * delay + [3] * (reward + 1)


# ----------------------------------------------------------------------------------------------
# The rules


@pytest.mark.parametrize("view", VIEWS)
def test_passive_colour_is_in_the_first_observation(view):
    env = gym.make("memory_agents/PassiveVisualMatch-v0", view=view)
    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        target = cells.COLOURS.index(env.unwrapped.target_colour)
        assert (obs == COLOUR_RGB[target]).all(-1).sum() == 1
        others = np.delete(COLOUR_RGB, target, axis=0)
        assert not (obs.reshape(-1, 1, 3) == others[None]).all(-1).any()


def test_active_colour_and_start_are_uniform():
    env = gym.make("memory_agents/ActiveVisualMatch-v0")
    walls, starts, targets, in_view = {}, {}, {}, 0
    n = 5200
    for seed in range(n):
        obs, _ = env.reset(seed=seed)
        base = env.unwrapped
        room = base._rooms[0][0][2:-2, 2:-2]
        (cell,) = [tuple(rc) for rc in np.argwhere(np.isin(room, cells.COLOUR_WALL))]
        walls[cell] = walls.get(cell, 0) + 1
        starts[base._row, base._col] = starts.get((base._row, base._col), 0) + 1
        targets[base.target_colour] = targets.get(base.target_colour, 0) + 1
        in_view += has_match_colour(obs)
    assert set(walls) == set(WALL_CELLS) and set(starts) == set(START_CELLS)
    # Uniform: each count within ~4 standard deviations of its mean.
    for counts, k in ((walls, 26), (starts, 10), (targets, 3)):
        mean = n / k
        assert all(abs(c - mean) < 4 * np.sqrt(mean) for c in counts.values()), counts
    # Exact chance that the colour is in the 5x5 window at the start, over the 26 x 10 layouts.
    exact = np.mean([max(abs(w[0] - s[0]), abs(w[1] - s[1])) <= 2 for w in WALL_CELLS for s in START_CELLS])
    assert 0.25 < exact < 0.35  # the release's "roughly 30%"
    assert abs(in_view / n - exact) < 0.03


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("task", ["PassiveVisualMatch", "ActiveVisualMatch"])
def test_target_colour_never_visible_after_phase_one(task, view):
    env = gym.make(f"memory_agents/{task}-Delay15-v0", view=view)
    rng = np.random.default_rng(0)
    orders = set()
    for seed in range(40):
        env.reset(seed=seed)
        base = env.unwrapped
        orders.add(base.square_colours)
        # Phase 3 shows all three colours whatever the target, so it cannot tell the target.
        assert sorted(base.square_colours) == sorted(cells.COLOURS)
        truncated = False
        while not truncated:
            obs, _, _, truncated, info = env.step(rng.integers(env.action_space.n))
            if info["phase"] == 2:
                assert not has_match_colour(obs)
    assert len(orders) == 6  # "instance" (the default) draws an order at every seeded reset


def test_fixed_colour_order():
    env = gym.make("memory_agents/ActiveVisualMatch-v0", colour_order="fixed")
    for seed in range(10):
        env.reset(seed=seed)
        assert env.unwrapped.square_colours == ("red", "green", "blue")


@pytest.mark.parametrize("task", ["PassiveVisualMatch", "ActiveVisualMatch"])
def test_instance_colour_order_is_the_releases_rule(task):
    env = gym.make(f"memory_agents/{task}-Delay15-v0")
    assert env.unwrapped.colour_order == "instance"  # the registered ids' default
    env.reset(seed=3)
    order = env.unwrapped.square_colours
    targets = set()
    for _ in range(30):  # unseeded resets: new episodes, same instance, same order
        env.reset()
        assert env.unwrapped.square_colours == order
        targets.add(env.unwrapped.target_colour)
    assert targets == {"red", "green", "blue"}
    env.reset(seed=3)
    assert env.unwrapped.square_colours == order  # the seed fixes the instance's order
    # A batch of 16 envs seeded seed + i, as RLlib seeds its vector envs, differ: here 5 of the
    # 6 orders (the release's batch of 16 draws them the same way, so it misses some too).
    batch = [gym.make(f"memory_agents/{task}-Delay15-v0") for _ in range(16)]
    orders = set()
    for i, member in enumerate(batch):
        member.reset(seed=100 + i)
        orders.add(member.unwrapped.square_colours)
    assert len(orders) >= 4


def test_episode_colour_order_changes_without_a_seed():
    env = gym.make("memory_agents/PassiveVisualMatch-Delay15-v0", colour_order="episode")
    env.reset(seed=0)
    orders = set()
    for _ in range(40):
        env.reset()
        orders.add(env.unwrapped.square_colours)
    assert len(orders) == 6


def _to_reward_room(env, seed):
    env.reset(seed=seed)
    base = env.unwrapped
    while base.phase != 3:
        env.step(0)
    return base


@pytest.mark.parametrize("column", [2, 5, 8])
def test_first_touch_counts_and_squares_vanish(column):
    env = gym.make("memory_agents/PassiveVisualMatch-v0", distractor_steps=2, final_reward=7.5, wrong_reward=-1.0)
    for seed in range(6):
        base = _to_reward_room(env, seed)
        chosen = base.square_colours[(2, 5, 8).index(column)]
        # North to row 2, across to the column, north onto the square: 0 N, 2 W, 3 E.
        route = [0, 0, 0] + [2 if column < 5 else 3] * abs(column - 5) + [0]
        assert base.touched_square is None and base.touch_step is None
        rewards = [env.step(a)[1] for a in route]
        expected = 7.5 if chosen == base.target_colour else -1.0
        assert rewards == [0.0] * (len(route) - 1) + [expected]
        # The touch is recorded: which square (left to right) and on which step of the phase.
        assert base.touched_square == (2, 5, 8).index(column)
        assert base.touch_step == len(route)
        assert base.square_colours[base.target_square] == base.target_colour
        assert not np.isin(base._board, cells.COLOUR_SQUARE).any()  # all squares vanished
        # Walk over where the other squares stood: nothing more is paid.
        more = [env.step(a)[1] for a in [1, 3, 3, 3, 0, 2]]
        truncated = False
        while not truncated:
            _, reward, _, truncated, info = env.step(2)
            more.append(reward)
        assert more == [0.0] * len(more)
        assert base.touched_square == (2, 5, 8).index(column)  # the first touch stays recorded
        assert info["last_phase_reward"] == expected
        assert info["success"] == float(chosen == base.target_colour)


def test_no_touch_gives_zero():
    env = gym.make("memory_agents/ActiveVisualMatch-v0", distractor_steps=0)
    _to_reward_room(env, 0)
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(1)  # south: stays in the alcove
    assert info["last_phase_reward"] == 0.0 and info["success"] == 0.0
    assert env.unwrapped.touched_square is None and env.unwrapped.touch_step is None


def test_apples_pay_and_respawn():
    env = gym.make(
        "memory_agents/PassiveVisualMatch-v0", explore_steps=1, num_apples=len(APPLE_CELLS),
        apple_reward=2.5, apple_respawn_steps=5,
    )
    env.reset(seed=0)
    env.step(0)  # phase 2 starts; all 22 candidate cells hold an apple
    base = env.unwrapped
    assert base.phase == 2 and np.count_nonzero(base._board == cells.APPLE) == 22
    _, reward, *_ = env.step(0)  # north to (4, 5): not a candidate cell
    assert reward == 0.0
    _, reward, *_ = env.step(2)  # west to (4, 4): an apple
    assert reward == 2.5 and base._board[4 + base._pad, 4 + base._pad] == cells.FLOOR
    _, reward, *_ = env.step(3)  # back east: (4, 5)
    assert reward == 0.0
    for _ in range(3):
        obs, *_ = env.step(1)  # south, into (5, 5), then against the wall
        assert (obs[1, 1] == cells.RGB[cells.FLOOR]).all()  # (4, 4) still empty
    obs, *_ = env.step(1)  # 5 steps after the pickup the apple is back
    assert (obs[1, 1] == cells.RGB[cells.APPLE]).all()
    _, reward, *_ = env.step(0)
    _, reward, *_ = env.step(2)
    assert reward == 2.5


def test_apples_never_respawn_with_none():
    env = gym.make("memory_agents/KeyToDoor-v0", explore_steps=1, num_apples=22, apple_respawn_steps=None)
    env.reset(seed=0)
    env.step(0)
    env.step(0)
    assert env.step(2)[1] == 1.0
    base = env.unwrapped
    for _ in range(80):
        env.step(1)
    assert base._board[4 + base._pad, 4 + base._pad] == cells.FLOOR


def test_apple_reward_pair_is_drawn_per_episode():
    env = gym.make("memory_agents/ActiveVisualMatch-v0", explore_steps=1, num_apples=22, apple_reward=(1, 10))
    values = []
    for seed in range(40):
        env.reset(seed=seed)
        env.step(0)  # into phase 2
        env.step(0)  # (4, 5)
        first = env.step(2)[1]  # (4, 4): an apple
        assert env.step(2)[1] == 0.0  # (4, 3): not a candidate cell
        assert env.step(2)[1] == first  # (4, 2): an apple, worth the same in this episode
        values.append(first)
    assert set(values) == {1.0, 10.0}


@pytest.mark.parametrize("num_apples", [0, 1, 22])
def test_num_apples(num_apples):
    env = gym.make("memory_agents/ActiveVisualMatch-v0", num_apples=num_apples)
    for seed in range(5):
        env.reset(seed=seed)
        assert np.count_nonzero(env.unwrapped._rooms[1][0] == cells.APPLE) == num_apples


def test_key_to_door_needs_the_key():
    env = gym.make("memory_agents/KeyToDoor-v0", distractor_steps=1)
    env.reset(seed=0)
    base = env.unwrapped
    base.has_key = True  # as if picked up; the route to the key is the scripted agents' job
    for _ in range(15 + 1):
        env.step(1)
    assert base.phase == 3
    rewards = [env.step(0)[1] for _ in range(4)]  # door at 2 steps, treasure at 4
    assert rewards == [0.0, 0.0, 0.0, 10.0]
    env.reset(seed=0)
    for _ in range(16):
        env.step(1)
    rewards = [env.step(0)[1] for _ in range(4)]
    assert rewards == [0.0] * 4 and base._row == 4  # stopped by the locked door


# ----------------------------------------------------------------------------------------------
# Observation forms


@pytest.mark.parametrize("env_id", BASE_IDS)
def test_egocentric_view_equals_minigrid(env_id):
    env = gym.make(env_id, view="egocentric")
    base = env.unwrapped
    rng = np.random.default_rng(0)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        for action in rng.integers(3, size=base.max_steps):
            reference = MiniGridEnv.gen_obs(base)["image"]  # minigrid's own view code
            np.testing.assert_array_equal(base.minigrid_image(), reference)
            # The RGB observation is the same cells: agent bottom centre, looking up.
            np.testing.assert_array_equal(obs[-1, base.view_size // 2], cells.RGB[cells.AGENT])
            obs, *_ = env.step(action)


def test_top_down_window_is_centred_and_north_up():
    env = gym.make("memory_agents/PassiveVisualMatch-v0", view_size=7)
    obs, _ = env.reset(seed=0)
    # Agent at (3, 3), the colour just west of it, corridor walls above and below, floor around.
    assert obs.shape == (7, 7, 3)
    assert (obs[3, 3] == cells.RGB[cells.AGENT]).all()
    colour = cells.COLOURS.index(env.unwrapped.target_colour)
    assert (obs[3, 2] == cells.COLOUR_RGB[colour]).all()
    assert (obs[2, 2:] == cells.RGB[cells.WALL]).all() and (obs[4, 2:] == cells.RGB[cells.WALL]).all()
    assert (obs[0] == cells.RGB[cells.FLOOR]).all()  # outside the map: floor padding
    obs, *_ = env.step(3)  # east
    assert (obs[3, 2] == cells.RGB[cells.FLOOR]).all() and (obs[3, 1] == cells.COLOUR_RGB[colour]).all()


@pytest.mark.parametrize("view", VIEWS)
def test_minigrid_dict_wrapper(view):
    env = envs.MinigridObsWrapper(gym.make("memory_agents/ActiveVisualMatch-v0", view=view))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["mission"] == "remember the colour, then touch the square of that colour"
    for action in range(env.action_space.n):
        obs, *_ = env.step(action)
        assert env.observation_space.contains(obs)
        assert obs["direction"] == env.unwrapped.agent_dir
    # Minigrid's own wrappers stack on top.
    img = ImgObsWrapper(env)
    assert img.reset(seed=0)[0].shape == (env.unwrapped.view_size,) * 2 + (3,)


def test_minigrid_dict_wrapper_top_down_encoding():
    env = envs.MinigridObsWrapper(gym.make("memory_agents/PassiveVisualMatch-v0"))
    obs, _ = env.reset(seed=0)
    image = obs["image"]  # minigrid's (x, y) indexing
    assert tuple(image[2, 2]) == (10, 0, env.unwrapped.agent_dir)  # the agent
    assert image[1, 2, 0] == 2 and image[1, 2, 1] == cells.COLOURS.index(env.unwrapped.target_colour)
    assert tuple(image[2, 1]) == (2, 5, 0)  # grey wall north of the agent
    with pytest.raises(ValueError, match="memory_agents env"):
        envs.MinigridObsWrapper(gym.make("MiniGrid-Empty-5x5-v0"))


@pytest.mark.parametrize("env_id", BASE_IDS)
def test_vector_env(env_id):
    vec = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync")
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (3, 5, 5, 3)
    for _ in range(121):
        obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
    assert not terminated.any()
    vec.close()


# ----------------------------------------------------------------------------------------------
# Keyword arguments


BAD_KWARGS = [
    ({"explore_steps": 0}, "explore_steps must be an integer >= 1"),
    ({"explore_steps": -3}, "explore_steps"),
    ({"explore_steps": 2.5}, "explore_steps"),
    ({"distractor_steps": -1}, "distractor_steps must be an integer >= 0"),
    ({"distractor_steps": True}, "distractor_steps"),
    ({"reward_steps": 0}, "reward_steps must be an integer >= 1"),
    ({"num_apples": 23}, "num_apples must be an integer from 0 to 22"),
    ({"num_apples": -1}, "num_apples"),
    ({"apple_reward": "1"}, "apple_reward must be a finite number, or a pair"),
    ({"apple_reward": (1, 2, 3)}, "apple_reward"),
    ({"apple_reward": float("nan")}, "apple_reward"),
    ({"apple_respawn_steps": 0}, "apple_respawn_steps must be an integer >= 1, or None"),
    ({"final_reward": None}, "final_reward must be a finite number"),
    ({"final_reward": float("inf")}, "final_reward"),
    ({"view": "first_person"}, r"view must be one of \('top_down', 'egocentric'\)"),
    ({"view_size": 4}, "view_size must be an odd integer >= 3"),
    ({"view_size": 1}, "view_size"),
    ({"render_mode": "ansi"}, "render_mode must be None or one of"),
    ({"episode_end": "done"}, r"episode_end must be one of \('truncated', 'terminated'\)"),
]
VISUAL_MATCH_BAD_KWARGS = [
    ({"wrong_reward": "0"}, "wrong_reward must be a finite number"),
    ({"colour_order": "shuffled"}, "colour_order must be one of 'instance', 'episode', 'fixed'"),
]


@pytest.mark.filterwarnings("ignore:.*render_mode='ansi'")  # gymnasium's own warning, then ours
@pytest.mark.parametrize("kwargs, message", BAD_KWARGS)
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_bad_kwargs_raise(env_id, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make(env_id, **kwargs)


@pytest.mark.parametrize("kwargs, message", VISUAL_MATCH_BAD_KWARGS)
@pytest.mark.parametrize("env_id", [i for i in ALL_IDS if "VisualMatch" in i])
def test_visual_match_bad_kwargs_raise(env_id, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make(env_id, **kwargs)


def test_key_to_door_rejects_colour_kwargs():
    with pytest.raises(TypeError):
        gym.make("memory_agents/KeyToDoor-v0", wrong_reward=1.0)


def test_good_kwargs_are_kept():
    env = gym.make(
        "memory_agents/ActiveVisualMatch-v0", explore_steps=np.int64(4), distractor_steps=0,
        reward_steps=9, num_apples=0, apple_reward=(0.5, 2), apple_respawn_steps=None,
        final_reward=1, wrong_reward=-1, colour_order="fixed", view="egocentric", view_size=9,
    )
    base = env.unwrapped
    assert (base.explore_steps, base.distractor_steps, base.reward_steps, base.max_steps) == (4, 0, 9, 13)
    assert base.apple_reward == (0.5, 2.0) and base.final_reward == 1.0 and base.wrong_reward == -1.0
    assert env.observation_space.shape == (9, 9, 3) and env.action_space.n == 3


# ----------------------------------------------------------------------------------------------
# Scripts


def test_play_script_keys():
    from envs import play

    env = gym.make("memory_agents/PassiveVisualMatch-v0", render_mode="human", explore_steps=1,
                   distractor_steps=0, reward_steps=4, screen_size=200)
    player = play.Player(env, seed=0)
    player.reset()
    assert player.handle_key("right")["phase"] == 3  # east, then the timer moves it on
    for _ in range(3):
        player.handle_key("up")
    info = player.handle_key("up")  # the centre square, and the episode's last step
    assert info["last_phase_reward"] in (0.0, 10.0) and env.unwrapped.step_count == 0  # reset
    assert player.handle_key("x") is None
    player.handle_key("escape")
    assert player.closed
    env.close()

    ego = play.Player(gym.make("memory_agents/KeyToDoor-v0", view="egocentric"))
    ego.reset()
    ego.handle_key("left")
    assert ego.env.unwrapped.agent_dir == 2  # north turned left: west


def test_render_docs_writes_every_phase(tmp_path):
    from envs import render_docs

    paths = render_docs.main(["--out", str(tmp_path)])
    assert len(paths) == 9
    import pygame

    for path in paths:
        image = pygame.surfarray.array3d(pygame.image.load(path))
        assert image.shape[1] == 7 * render_docs.TILE
    # The Active phase-1 frame shows the search's end: the colour in the agent's view.
    active = pygame.surfarray.array3d(pygame.image.load(paths[3])).transpose(1, 0, 2)
    view = active[:, 11 * render_docs.TILE :]
    assert has_match_colour(view)
