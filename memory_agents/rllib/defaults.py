"""The one place for the defaults of a Visual Match training run.

`rllib train --algo ... --env ...` (flag mode), the shipped `configs/*.py`, the match
experiment (`python -m memory_agents.experiments.match`) and `memory_agent_config` read
these, so the three ways of starting a run train the same agent unless told otherwise.
Each value was measured on Passive Visual Match, delay 30, on a 2-core machine (README,
"Learning results"); the comments say why.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

#: Recurrent hidden size. 128 learned delay 30 as well as 256 and trains faster.
HIDDEN_SIZE = 128
#: Observation encoder (the module's `conv_filters`, `embed_dim`): two 3x3 convolutions of
#: 16 and 32 channels over the 5x5 view, then 800 -> 256. Smaller encoders train faster but
#: learned slower here (Passive Visual Match, delay 30, greedy evaluation >= 90%): with one
#: conv of 16 and 400 -> 128 (2.3x the reference's env steps/s, against 1.35x for this one)
#: seeds 0/1/2 took 442k / >2M / 941k steps, against 403k / 691k / 634k before and 576k for
#: seed 1 with this encoder; one conv of 16 and 400 -> 256 was still at 2/3 success at 787k
#: on seed 1.
CONV_FILTERS = [[16, 3, 1], [32, 3, 1]]
EMBED_DIM = 256
#: Vectorised envs per env runner: 64, each running one episode per training batch. The
#: batch is the same 64 whole episodes as 16 envs x 4 (the release steps a batch of 16 envs),
#: but RLlib's sampling costs per vector step (connectors, episode bookkeeping, the module's
#: forward) are shared by 4x as many envs: 0.25 s per 3,840-step batch (32 envs: 0.30 s;
#: 16 envs: 0.5-0.7 s).
NUM_ENVS_PER_ENV_RUNNER = 64
#: Remote env runners: one, so that sampling runs on the second core while the trainer
#: process learns (OVERLAP_SAMPLING). A cluster raises this, one CPU per runner; the batch
#: grows with them. 0 samples in the trainer process.
NUM_ENV_RUNNERS = 1
#: Learner processes (Ray actors, one CPU and one torch thread each; torch DDP averages their
#: gradients). 0: one learner inside the trainer process (RLlib's default). Two learners
#: sharing every minibatch were slower here than one, on a quiet 2-core machine
#: (benchmarks/rl_throughput.py, one run each, 2026-12-01): 1,837 env steps/s with 2 learners
#: against 1,996 with 0 (both sampling in the trainer). Halving a minibatch of 8 episodes
#: hardly shortens the core's 61 sequential steps, and DDP adds an all-reduce per update. On
#: a cluster or a GPU, raise it.
NUM_LEARNERS = 0
#: PPO with remote env runners: sample the next batch while the learner trains on this one
#: (`memory_agents.rllib.overlap.OverlapPPO`). On: on a quiet 2-core machine it trained at
#: 2,622 env steps/s against 1,996 without (benchmarks/rl_throughput.py), and steps to 90%
#: on delay 30 (fixed colours) were 538k and 518k on seeds 1 and 2 (synchronous: 749k and
#: > 1.5M), seed 0 > 1.5M (synchronous: 595k): one seed in three stuck on a plateau either
#: way, so the one-update-stale behaviour policy cost no visible sample efficiency at 3 seeds
#: (README, "Wall time to solve"). DeepMind's release
#: trains synchronously (tvt/main.py: "Batched synchronous actor/learner training"); set
#: MEMORY_AGENTS_OVERLAP_SAMPLING=0 for that.
OVERLAP_SAMPLING = True
#: PPO: 8 epochs x 8 minibatches at lr 1e-3 reached 90% at ~450k steps on delay 30;
#: 4 x 4 at 5e-4 stalled near 65%.
LR = 1e-3
NUM_EPOCHS = 8
NUM_MINIBATCHES = 8
#: The release's A2C used gamma 0.92 with 120-step episodes; 0.96 keeps the final reward
#: visible from the first phase of a 60-step episode.
GAMMA = 0.96
#: Entropy bonus. 0.03 broke the fixed-order plateau (delay 30, steps to 90% on seeds 0/1/2:
#: 422k/211k/576k against a plateau/538k/518k) but slowed the release's colour order per
#: instance, the default task (ur-lstm seed 0: 0.27 at 1.5M steps against 90% at 1.48M with
#: 0.01); README "Wall time to solve". The fixed-order config
#: (configs/ppo_passive_match_fixed_ur_lstm.py) ships FIXED_ORDER_ENTROPY_COEFF.
ENTROPY_COEFF = 0.01
FIXED_ORDER_ENTROPY_COEFF = 0.03
#: PPO's value loss unclipped. RLlib clamps each step's squared value error at
#: `vf_clip_param` (10 by default), and a clamped step gives the critic no gradient. With the
#: final reward of 10, a success's targets near the reward are 5-10 above a critic that says
#: "about 3", so only the failures trained it there: a trained agent's critic read about 0.1
#: in the reward room where the returns averaged 2.1 (delay 30), and every greedy agent walked
#: to the centre square whatever the colours. Unclipped, on the release's colour order per
#: instance at delay 0 (ur-lstm, seed 0), greedy success went from 0.300 to 0.733 (300
#: episodes) at 384k steps (README, "The value-loss clip"). Infinity = no clamp.
VF_CLIP_PARAM = float("inf")
#: Whole episodes per env runner per training batch (spread over its envs: 1 each at 64
#: envs, 4 each at 16), so the batch grows with the runners on a cluster.
EPISODES_PER_BATCH = 64
#: Agent options of DeepMind's TVT release (`memory_agents.rllib.module`, README "Agent
#: options"), both off: the one-hot last action and the last reward as inputs of the core
#: (the release always feeds them, tvt/rma.py:444-458), and the auxiliary reconstruction
#: loss, in multiples of the release's weights (1.0 = image 50 per pixel-mean, action 1,
#: reward 1; tvt/rma.py:522-529). Off, as measured: on delay 0 with the colour order per
#: instance (ur-lstm, seed 0, 600k steps), greedy success was 0.40 without them and 0.30 with
#: the last action and reward in (with reconstruction x0, x0.1 and x1 alike: a position
#: policy; seed 1 without them: 0.30 too); README "Agent options", docs/rl/agent_options_d0.
#: Those runs had RLlib's value-loss clamp (VF_CLIP_PARAM), which blocked every variant; the
#: options are not yet measured without it.
PREV_ACTION_REWARD = False
RECONSTRUCTION_WEIGHT = 0.0
#: Greedy evaluation every N training iterations, over this many episodes.
EVALUATION_INTERVAL = 10
EVALUATION_EPISODES = 32
#: The match experiment evaluates twice as often: its curves are what it is for.
MATCH_EVALUATION_INTERVAL = 5
#: The Visual Match reward room's colour order in the configs and the match experiment: the
#: release's rule, "instance" (each env keeps the order it drew from its seed; the batch's envs
#: differ), as in the envs themselves. "fixed" (red, green, blue) is the easier variant that the
#: earlier results used. The release's rule needs the unclipped value loss (VF_CLIP_PARAM) and
#: more steps: experiment 1 (README, "The release's task") saw ur-lstm reach 90% greedy success
#: in training at 1.48M and 1.63M steps at delay 30.
COLOUR_ORDER = "instance"
#: Default stop: 2M env steps, the budget of experiment 1 on the release's colour order (above);
#: about 20-25 minutes here. The fixed order needs less (403k-1.23M steps to 90% over 3 seeds).
TIMESTEPS = 2_000_000
STOP_KEY = "num_env_steps_sampled_lifetime"

#: Checkpoints: every N iterations (~2 s each here, so about every 2 minutes) and, for slow
#: iterations, at least every CHECKPOINT_EVERY_S seconds of wall time; the last
#: KEEP_CHECKPOINTS are kept.
CHECKPOINT_FREQ = 60
CHECKPOINT_EVERY_S = 300.0
KEEP_CHECKPOINTS = 3

#: torch threads in the trainer and in every Ray worker: with 2 threads on 2 cores a PPO
#: iteration went from 0.6 s to 30 s (torch's threads fight the env loop).
TORCH_THREADS = 1
STORAGE_PATH = "~/ray_results"

T = TypeVar("T")


def env_knob(name: str, default: T, kind: Callable[[str], T] = int) -> T:
    """An environment variable as `kind`, or `default`; a clear error naming the variable.

    Integers accept "1e6" (a float that is a whole number), since stops are often written so.
    """
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        if kind is int:
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)  # type: ignore[return-value]
        if kind is bool:
            if text.strip().lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ValueError
            return text.strip().lower() in ("1", "true", "yes")  # type: ignore[return-value]
        return kind(text)
    except ValueError:
        expected = {int: "an integer", float: "a number", bool: "0 or 1"}.get(kind, kind.__name__)
        raise ValueError(f"environment variable {name}={text!r} is not {expected}") from None
