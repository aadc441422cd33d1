"""RLlib adapter: recurrent agents whose memory is a gated cell of `memory_agents.cells`.

Layering: imports `memory_agents.cells` (below it); never the envs or supervised packages.
Entry points: `rllib train` / `rllib evaluate` (memory_agents.cli), configs/*.py.
"""

from memory_agents.rllib.callbacks import EPISODE_INFO_METRICS, MemoryTaskMetrics
from memory_agents.rllib.config import memory_agent_config, module_spec
from memory_agents.rllib.module import RecurrentCellAPPOModule, RecurrentCellModule

__all__ = [
    "EPISODE_INFO_METRICS",
    "MemoryTaskMetrics",
    "RecurrentCellAPPOModule",
    "RecurrentCellModule",
    "memory_agent_config",
    "module_spec",
]
