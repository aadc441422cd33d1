"""Memory tasks of Hung et al. (2018) as Gymnasium environments built on minigrid.

Importing this package registers the ids (``gym.make("envs:memory_agents/...")`` imports it
for you)::

    import gymnasium as gym, envs
    env = gym.make("memory_agents/PassiveVisualMatch-v0", distractor_steps=30)

Registration is idempotent: Ray workers and test runners import the package more than once.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from envs.active_visual_match import ActiveVisualMatchEnv
from envs.key_to_door import KeyToDoorEnv
from envs.passive_visual_match import PassiveVisualMatchEnv
from envs.wrappers import MinigridObsWrapper

NAMESPACE = "memory_agents"
TASKS = {
    "PassiveVisualMatch": "envs.passive_visual_match:PassiveVisualMatchEnv",
    "ActiveVisualMatch": "envs.active_visual_match:ActiveVisualMatchEnv",
    "KeyToDoor": "envs.key_to_door:KeyToDoorEnv",
}
# Named delays (distractor_steps) to cite; the plain id keeps the release's 90.
DELAY_PRESETS = (15, 30, 60)


def _registrations() -> dict[str, tuple[str, dict]]:
    table = {}
    for name, entry_point in TASKS.items():
        table[f"{NAMESPACE}/{name}-v0"] = (entry_point, {})
        for delay in DELAY_PRESETS:
            table[f"{NAMESPACE}/{name}-Delay{delay}-v0"] = (entry_point, {"distractor_steps": delay})
    return table


REGISTERED_IDS = tuple(_registrations())


def register_envs() -> None:
    """Register every id once (a second call, or a second import, does nothing)."""
    for env_id, (entry_point, kwargs) in _registrations().items():
        if env_id not in registry:
            # max_episode_steps is left unset: the env truncates itself at the exact length,
            # whatever explore/distractor/reward steps the user passes.
            register(id=env_id, entry_point=entry_point, kwargs=kwargs)


register_envs()

__all__ = [
    "ActiveVisualMatchEnv",
    "KeyToDoorEnv",
    "MinigridObsWrapper",
    "PassiveVisualMatchEnv",
    "REGISTERED_IDS",
    "register_envs",
]
