"""Our recurrent module trains under PPO, APPO and IMPALA (new API stack), with metrics.

    .venv/bin/python -m pytest tests/test_rllib_algos.py -q      (about a minute)
"""

import time

import numpy as np
import pytest
import torch

from memory_agents.rllib import RecurrentCellAPPOModule, RecurrentCellModule, memory_agent_config

ENV = "memory_agents/PassiveVisualMatch-Delay15-v0"  # 45-step episodes


@pytest.fixture(scope="module", autouse=True)
def _ray_for_every_test(local_ray):
    """Every test here trains through Ray (the fixture: tests/conftest.py)."""


def test_config_defaults_cover_a_whole_episode():
    config = memory_agent_config(ENV, cell="ur-gru", hidden_size=8)
    spec = config._rl_module_spec
    assert config.env == "envs:" + ENV  # remote runners import `envs` before gym.make
    assert spec.module_class is RecurrentCellModule
    # The episode plus the learner's bootstrap step: one sequence per episode, no chunk of
    # one real step padded to a whole sequence.
    assert spec.model_config["max_seq_len"] == 15 + 15 + 15 + 1
    # The batch is 64 whole episodes per env runner: 1 per env at the default 64 envs. One
    # remote runner samples the next batch (OverlapPPO) while the learner, inside the trainer
    # process, trains on this one: one CPU each.
    assert config.num_envs_per_env_runner == 64
    assert config.num_env_runners == 1 and config.algo_class.__name__ == "OverlapPPO"
    assert config.num_learners == 0 and config.num_cpus_for_main_process == 1
    assert config.total_train_batch_size == config.train_batch_size_per_learner == 64 * 45
    assert memory_agent_config(ENV, num_envs_per_env_runner=16).total_train_batch_size == 64 * 45
    assert memory_agent_config(ENV, num_env_runners=3).total_train_batch_size == 3 * 64 * 45
    # No remote runner: RLlib's PPO (nothing to overlap with), the same batch.
    local = memory_agent_config(ENV, num_env_runners=0)
    assert local.algo_class.__name__ == "PPO" and local.total_train_batch_size == 64 * 45
    # Minibatches of 8 whole episodes in the learner's steps (46 per episode with its bootstrap
    # step), so RLlib's cut (sequences * minibatch / steps, rounded down) gives exactly 8.
    assert config.minibatch_size == 8 * 46
    assert 64 // int(64 * config.minibatch_size / (64 * 46)) == 8
    # Two learner processes share it (RLlib's sizes are per learner): 32 episodes and
    # minibatches of 4 each; they take a CPU each, none left for the trainer without overlap.
    shared = memory_agent_config(ENV, num_learners=2, overlap_sampling=False)
    assert shared.num_cpus_per_learner == 1 and shared.num_cpus_for_main_process == 0
    assert shared.train_batch_size_per_learner == 32 * 45 and shared.minibatch_size == 4 * 46
    # A batch of fewer than 8 episodes still gets one whole episode per minibatch, not none.
    assert memory_agent_config(ENV, train_batch_size=4 * 45).minibatch_size == 46
    # Totals that do not split evenly round up; a bad learner count is refused.
    odd = memory_agent_config(ENV, num_learners=3, train_batch_size=9 * 45 + 1, minibatch_size=3 * 46 * 3)
    assert (odd.train_batch_size_per_learner, odd.minibatch_size) == (3 * 45 + 1, 3 * 46)
    # ... but never below one whole sequence (46 steps) per learner.
    assert memory_agent_config(ENV, num_learners=2, minibatch_size=46).minibatch_size == 46
    with pytest.raises(ValueError, match="num_learners must be an integer >= 0"):
        memory_agent_config(ENV, num_learners=-1)
    assert memory_agent_config(ENV, algo="APPO")._rl_module_spec.module_class is RecurrentCellAPPOModule
    # PPO's value loss is not clamped (RLlib's default clamps the squared error at 10).
    assert config.vf_clip_param == float("inf")
    # RLlib seeds sub-env i with seed + i: seeds 1 and 2 must not share env streams.
    seeds = [memory_agent_config(ENV, seed=s, num_envs_per_env_runner=16).seed for s in (1, 2)]
    assert seeds[1] - seeds[0] > 16


def test_greedy_evaluation_draws_fresh_episodes_each_time():
    # RLlib re-seeds its envs before every "episodes"-unit evaluation (same episodes every
    # time, measured: identical returns over 3 evaluations); counting env steps continues them.
    config = memory_agent_config(ENV, hidden_size=8, evaluation_interval=5, evaluation_episodes=32)
    assert config.evaluation_duration_unit == "timesteps"
    assert config.evaluation_duration == 32 * (15 + 15 + 15)
    # Each evaluation reports its own 32 episodes, not a window reaching back to older ones.
    eval_config = config.get_evaluation_config_object()
    assert eval_config.metrics_num_episodes_for_smoothing == 32
    assert eval_config.explore is False


@pytest.mark.parametrize("num_learners", [0, 2])
def test_ppo_iteration_updates_weights_and_logs_task_metrics(num_learners):
    config = memory_agent_config(
        ENV, cell="ur-lstm", hidden_size=8, num_envs_per_env_runner=2, num_epochs=1,
        train_batch_size=180, minibatch_size=90, evaluation_interval=1, evaluation_episodes=2,
        num_learners=num_learners,
    )
    algo = config.build_algo()
    try:
        # Its logs go to the test session's temporary folder (tests/conftest.py), never to
        # the user's ~/ray_results.
        from conftest import RESULTS_DIR

        assert algo.logdir.startswith(RESULTS_DIR)
        before = {k: np.array(v) for k, v in algo.learner_group.get_weights()["default_policy"].items()}
        result = algo.train()
        after = algo.learner_group.get_weights()["default_policy"]
        assert any(not np.allclose(before[k], after[k]) for k in before)
        assert result["env_runners"]["num_env_steps_sampled"] == 180
        if num_learners:
            # DDP: every learner applied the same averaged gradients.
            copies = algo.learner_group.foreach_learner(
                lambda learner: {k: v.detach().numpy().copy() for k, v in learner.module["default_policy"].state_dict().items()})
            assert len(copies) == 2
            first, second = (c.get() for c in copies)
            assert all(np.array_equal(first[k], second[k]) for k in first)
        runners = result["env_runners"]
        assert 0.0 <= runners["success"] <= 1.0
        # Here the final reward is 10 or 0, so the two episode metrics agree.
        assert runners["last_phase_reward"] == pytest.approx(10 * runners["success"])
        assert 0.0 <= result["evaluation"]["env_runners"]["success"] <= 1.0
        assert np.isfinite(result["learners"]["default_policy"]["total_loss"])
        learner_results = result["learners"]["default_policy"]
        assert learner_results["vf_loss"] == pytest.approx(learner_results["vf_loss_unclipped"])
    finally:
        algo.stop()


def test_value_loss_trains_the_critic_on_a_large_error():
    """A success's return of 10 against a critic that says 0: with RLlib's default clamp
    (squared error at 10) that step gives the value head no gradient; ours is unclamped."""
    from ray.rllib.core.columns import Columns
    from ray.rllib.evaluation.postprocessing import Postprocessing

    grads = {}
    for clip in (10.0, None):
        kwargs = {} if clip is None else {"vf_clip_param": clip}
        config = memory_agent_config(ENV, cell="lstm", hidden_size=8, num_env_runners=0,
                                     evaluation_interval=0, **kwargs)
        algo = config.build_algo()
        try:
            learner = algo.learner_group._learner
            module = learner.module["default_policy"]
            torch.manual_seed(0)
            B, T = 2, 5
            obs = torch.randint(0, 256, (B, T, 5, 5, 3), dtype=torch.uint8)
            state = {k: torch.zeros(B, *v.shape) for k, v in module.get_initial_state().items()}
            batch = {Columns.OBS: obs, Columns.STATE_IN: state,
                     Columns.ACTIONS: torch.zeros(B, T, dtype=torch.long),
                     Columns.LOSS_MASK: torch.ones(B, T, dtype=torch.bool)}
            fwd = module.forward_train(batch)
            dist = module.get_train_action_dist_cls().from_logits(fwd[Columns.ACTION_DIST_INPUTS])
            batch[Columns.ACTION_LOGP] = dist.logp(batch[Columns.ACTIONS]).detach()
            batch[Columns.ACTION_DIST_INPUTS] = fwd[Columns.ACTION_DIST_INPUTS].detach()
            batch[Postprocessing.ADVANTAGES] = torch.zeros(B, T)  # only the value loss moves
            batch[Postprocessing.VALUE_TARGETS] = torch.full((B, T), 10.0)
            loss = learner.compute_loss_for_module(
                module_id="default_policy", config=learner.config.get_config_for_module("default_policy"),
                batch=batch, fwd_out=fwd)
            module.zero_grad()
            loss.backward()
            grads[clip] = float(module._values.weight.grad.abs().sum())
        finally:
            algo.stop()
    assert grads[10.0] == 0.0  # RLlib's clamp: the critic learns nothing from this success
    assert grads[None] > 0.0


@pytest.mark.parametrize("algo_name", ["APPO", "IMPALA"])
def test_async_algorithms_train_the_stateful_module(algo_name):
    config = memory_agent_config(
        ENV, algo=algo_name, cell="ur-lstm", hidden_size=8,
        num_env_runners=1, num_envs_per_env_runner=2, train_batch_size=90, num_learners=0,
    ).reporting(min_time_s_per_iteration=0)  # default 10 s per iteration for these two
    algo = config.build_algo()
    try:
        # A guard against a hang, not a speed target: the first update takes 20-40 s on a busy 2-core
        # machine, and 90 s proved too short for IMPALA beside two other jobs.
        losses, deadline = [], time.time() + 300
        while time.time() < deadline:  # async: the first iterations may only collect samples
            stats = algo.train().get("learners", {}).get("default_policy", {})
            if "total_loss" in stats:
                losses.append(stats["total_loss"])
                break
        assert losses, f"{algo_name} never reported a learner update"
        assert np.isfinite(losses[0])
    finally:
        algo.stop()


def test_overlapped_ppo_with_two_local_env_runners():
    """What a cluster does with more runners, on 2 local ones: each samples its share of the
    batch, and the next batch is requested before the learner updates on this one."""
    from memory_agents.rllib.overlap import OverlapPPO

    config = memory_agent_config(
        ENV, cell="ur-lstm", hidden_size=8, num_env_runners=2, num_envs_per_env_runner=2,
        num_learners=2, overlap_sampling=True, num_epochs=1, evaluation_interval=2, evaluation_episodes=2,
        train_batch_size=2 * 45 * 2 * 2,  # 2 episodes per env, 2 envs per runner, 2 runners
    )
    assert config.algo_class is OverlapPPO
    batch = config.total_train_batch_size
    algo = config.build_algo()
    try:
        before = {k: np.array(v) for k, v in algo.learner_group.get_weights()["default_policy"].items()}
        first = algo.train()
        assert algo._sampling  # the runners are on the next batch already
        assert first["env_runners"]["num_env_steps_sampled"] == batch
        assert np.isfinite(first["learners"]["default_policy"]["total_loss"])
        algo.wait_for_samples()
        episodes, metrics = algo._ready
        assert len(metrics) == 2  # one share from each runner
        assert sum(len(e) for e in episodes) == batch
        second = algo.train()  # trains on that batch, requests the next
        assert second["env_runners"]["num_env_steps_sampled_lifetime"] == 2 * batch
        assert 0.0 <= second["evaluation"]["env_runners"]["success"] <= 1.0
        after = algo.learner_group.get_weights()["default_policy"]
        assert any(not np.allclose(before[k], after[k]) for k in before)
    finally:
        algo.stop()


def test_overlap_needs_a_remote_env_runner():
    # With sampling in the trainer process there is nothing to overlap with: plain PPO.
    from ray.rllib.algorithms.ppo import PPO

    assert memory_agent_config(ENV, num_env_runners=0, overlap_sampling=True).algo_class is PPO
