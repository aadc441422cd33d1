"""Other observation forms of the memory tasks, as wrappers (the environments stay one class)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium import spaces

from envs.three_phase import ThreePhaseEnv


class MinigridObsWrapper(gym.ObservationWrapper):
    """Minigrid's dict observation: ``{"image", "direction", "mission"}``.

    ``image`` is the agent's view in minigrid's ``(OBJECT_IDX, COLOR_IDX, STATE)`` encoding,
    indexed ``image[x, y]`` as minigrid does, so minigrid's own wrappers and agents (e.g.
    ``ImgObsWrapper``, ``FlatObsWrapper``, ``OneHotPartialObsWrapper``) apply unchanged. With
    ``view="egocentric"`` it equals minigrid's ``gen_obs()`` with see-through walls.

    Example::

        env = MinigridObsWrapper(gym.make("memory_agents/ActiveVisualMatch-v0", view="egocentric"))
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, ThreePhaseEnv):
            raise ValueError(f"MinigridObsWrapper needs a memory_agents env, got {type(base).__name__}")
        v = base.view_size
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (v, v, 3), dtype="uint8"),
                "direction": spaces.Discrete(4),
                "mission": base.mission_space,
            }
        )

    def observation(self, observation: Any) -> dict[str, Any]:
        base = self.env.unwrapped
        return {"image": base.minigrid_image(), "direction": base.agent_dir, "mission": base.mission}
