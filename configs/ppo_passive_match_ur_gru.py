"""PPO with a ur-gru memory on Passive Visual Match (30-step delay by default).

    rllib train file configs/ppo_passive_match_ur_gru.py
    MEMORY_AGENTS_DELAY=60 MEMORY_AGENTS_SEED=1 rllib train file configs/ppo_passive_match_ur_gru.py

Knobs (cell, delay, seed, hidden size, budget, cluster sizes): see configs/visual_match_common.py.
"""

import runpy
from pathlib import Path

_common = runpy.run_path(str(Path(__file__).with_name("visual_match_common.py")))
config, stop = _common["build"](task="passive", cell="ur-gru")
