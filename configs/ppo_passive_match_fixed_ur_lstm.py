"""PPO with a ur-lstm memory on the easier Passive Visual Match: the reward room's colours in a
fixed order (red, green, blue from the left), 30-step delay by default.

    rllib train file configs/ppo_passive_match_fixed_ur_lstm.py

The task of the project's first learning result and of the wall-clock benchmark
(benchmarks/rl_time_to_solve.py). With the order fixed, "go to the same place as before" is a
solution, which the release's rule (one order per env instance, the other configs' default)
rules out. Its one setting of its own: an entropy bonus of 0.03
(`defaults.FIXED_ORDER_ENTROPY_COEFF`) instead of 0.01. Measured (delay 30, ur-lstm, steps to the
first greedy evaluation >= 90% on seeds 0/1/2): 422k/211k/576k with 0.03; with 0.01 one seed in
three sat on the "two colours of three" plateau for 1.2M steps or more. On the release's rule
0.03 was slower (README, "Wall time to solve"), so the other configs keep 0.01.

Knobs (cell, delay, seed, hidden size, budget, cluster sizes): see configs/visual_match_common.py;
MEMORY_AGENTS_COLOUR_ORDER still overrides the order.
"""

import runpy
from pathlib import Path

from memory_agents.rllib import defaults

_common = runpy.run_path(str(Path(__file__).with_name("visual_match_common.py")))
config, stop = _common["build"](task="passive", cell="ur-lstm", colour_order="fixed",
                                entropy_coeff=defaults.FIXED_ORDER_ENTROPY_COEFF)
