"""`MemoryPPOLearner` updates exactly as RLlib's `PPOTorchLearner` does, finite gradients or not.

Two algorithms with the same seed, one per learner class, sample the same batches and must end
with the same weights and Adam state, bit for bit; then both get the same gradients with NaN
and inf entries and must treat them alike (RLlib's zeroing).

    .venv/bin/python -m pytest tests/test_rllib_learner.py -q      (about 30 s)
"""

import torch

from memory_agents.rllib import memory_agent_config
from memory_agents.rllib.learner import MemoryPPOLearner

ENV = "memory_agents/PassiveVisualMatch-v0"
ENV_CONFIG = {"explore_steps": 5, "distractor_steps": 5, "reward_steps": 5}
EPISODE = 15


def build(learner_class=None):
    config = memory_agent_config(
        ENV, env_config=ENV_CONFIG, cell="ur-lstm", hidden_size=8, seed=3, num_env_runners=0,
        num_envs_per_env_runner=2, num_epochs=2, train_batch_size=8 * EPISODE,
        minibatch_size=2 * (EPISODE + 1), evaluation_interval=0,
    )
    if learner_class is not None:
        config.learners(learner_class=learner_class)
    return config.build_algo()


def learner_of(algo):
    return algo.learner_group._learner


def params(learner):
    return {name: p.detach().clone() for name, p in learner.module["default_policy"].named_parameters()}


def train_and_break(learner_class=None):
    """Weights, Adam's second moments and the learner's class after two iterations, then after
    gradients with a NaN and an inf entry. One algorithm at a time: in one process they would
    share torch's global RNG, from which the trainer's env runner samples its actions."""
    algo = build(learner_class)
    try:
        learner = learner_of(algo)
        before = params(learner)
        for _ in range(2):
            algo.train()
        trained = params(learner)
        assert any(not torch.equal(before[k], trained[k]) for k in before), "no update happened"
        optimizer = learner.get_optimizer("default_policy")
        moments = [optimizer.state[p]["exp_avg_sq"].clone() for p in optimizer.param_groups[0]["params"]]
        grads = {pid: torch.full_like(p, 1e-3) for pid, p in learner._params.items()}
        first, second = list(grads)[:2]
        grads[first].view(-1)[0] = float("nan")
        grads[second].view(-1)[-1] = float("inf")
        learner.apply_gradients(grads)
        # RLlib's handling: NaN zeroed, inf clamped, then the step.
        assert learner._params[first].grad.view(-1)[0] == 0.0
        assert torch.isfinite(learner._params[second].grad).all()
        return type(learner), optimizer.param_groups[0]["foreach"], trained, moments, params(learner)
    finally:
        algo.stop()


def test_updates_equal_rllibs_bit_for_bit(local_ray):
    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

    cls, foreach, trained, moments, broken = train_and_break()
    assert cls is MemoryPPOLearner and foreach is True
    ref_cls, ref_foreach, ref_trained, ref_moments, ref_broken = train_and_break(PPOTorchLearner)
    assert ref_cls is PPOTorchLearner and not ref_foreach
    for name in trained:
        assert torch.equal(trained[name], ref_trained[name]), name
        assert torch.isfinite(broken[name]).all(), name
        assert torch.equal(broken[name], ref_broken[name]), name
    assert all(torch.equal(a, b) for a, b in zip(moments, ref_moments))
