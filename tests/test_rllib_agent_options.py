"""The agent options of DeepMind's TVT release: the last action and reward as core inputs
(`prev_action_reward`) and the auxiliary reconstruction loss (`reconstruction_weight`).

Without Ray: the module's inputs and decoders, the loss, the connector's format, the errors.
With Ray: one small PPO iteration per option (and both, and both on 2 learners), and
`rllib evaluate` on a checkpoint trained with both.

    .venv/bin/python -m pytest tests/test_rllib_agent_options.py -q      (about a minute)
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from memory_agents.rllib import memory_agent_config
from memory_agents.rllib.learner import METRIC_NAMES, TOTAL_METRIC, ReconstructionPPOLearner, reconstruction_losses
from memory_agents.rllib.module import (
    ORIG_OBS_KEY,
    PREV_ACTIONS_KEY,
    PREV_REWARDS_KEY,
    RecurrentCellAPPOModule,
    RecurrentCellModule,
    prev_action_reward_observation,
)

IMAGE_SPACE = gym.spaces.Box(0, 255, (5, 5, 3), np.uint8)
ACTIONS = gym.spaces.Discrete(4)
#: What RLlib's PrevActionsPrevRewards connector makes of IMAGE_SPACE and ACTIONS.
DICT_SPACE = gym.spaces.Dict({
    ORIG_OBS_KEY: IMAGE_SPACE,
    PREV_ACTIONS_KEY: gym.spaces.Box(0.0, 1.0, (4,), np.float32),
    PREV_REWARDS_KEY: gym.spaces.Box(-np.inf, np.inf, (1,), np.float32),
})
EMBED, HIDDEN = 12, 16
#: 5 + 5 + 5 = 15-step episodes with apples (rewards) in the middle phase.
ENV = "memory_agents/PassiveVisualMatch-v0"
ENV_CONFIG = {"explore_steps": 5, "distractor_steps": 5, "reward_steps": 5}
EPISODE = 15


def make_module(cell="ur-lstm", obs_space=DICT_SPACE, cls=RecurrentCellModule, **options):
    torch.manual_seed(0)
    return cls(observation_space=obs_space, action_space=ACTIONS,
               model_config={"cell": cell, "hidden_size": HIDDEN, "embed_dim": EMBED, **options})


def dict_obs(batch, time, seed=0):
    g = torch.Generator().manual_seed(seed)
    actions = torch.randint(0, 4, (batch, time), generator=g)
    prev_actions = torch.nn.functional.one_hot(actions, 4).float()
    prev_actions[:, 0] = 0.0  # no action before an episode's first step
    return {
        ORIG_OBS_KEY: torch.randint(0, 256, (batch, time, *IMAGE_SPACE.shape), dtype=torch.uint8, generator=g),
        PREV_ACTIONS_KEY: prev_actions[:, :, None],  # (B, T, 1, n): the connector's one stacked action
        PREV_REWARDS_KEY: torch.randn(batch, time, 1, generator=g),
    }


def initial_state(module, batch):
    return {k: torch.from_numpy(v)[None].repeat(batch, *([1] * v.ndim)) for k, v in module.get_initial_state().items()}


# --- the module ------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["ur-lstm", "lstm", "ur-gru", "gru"])
def test_prev_action_and_reward_are_core_inputs(cell):
    module = make_module(cell, prev_action_reward=True)
    # The core reads the encoding, the one-hot last action and the last reward.
    core_inputs = {p.shape[1] for name, p in module._rnn.named_parameters() if name.endswith("weight_ih")}
    assert core_inputs == {EMBED + 4 + 1}
    obs = dict_obs(2, 3)
    other = {**obs, PREV_REWARDS_KEY: obs[PREV_REWARDS_KEY] + 10.0}
    with torch.no_grad():
        out = module.forward_inference({Columns.OBS: obs, Columns.STATE_IN: initial_state(module, 2)})
        moved = module.forward_inference({Columns.OBS: other, Columns.STATE_IN: initial_state(module, 2)})
    assert out[Columns.ACTION_DIST_INPUTS].shape == (2, 3, 4)
    assert not torch.allclose(out[Columns.ACTION_DIST_INPUTS], moved[Columns.ACTION_DIST_INPUTS], atol=1e-4)
    # Without the option the same observations leave the core as it was: the previous
    # reward is only a reconstruction target there.
    off = make_module(cell, reconstruction_weight=1.0)
    assert {p.shape[1] for name, p in off._rnn.named_parameters() if name.endswith("weight_ih")} == {EMBED}
    with torch.no_grad():
        a = off.forward_inference({Columns.OBS: obs, Columns.STATE_IN: initial_state(off, 2)})
        b = off.forward_inference({Columns.OBS: other, Columns.STATE_IN: initial_state(off, 2)})
    torch.testing.assert_close(a[Columns.ACTION_DIST_INPUTS], b[Columns.ACTION_DIST_INPUTS])


def test_options_off_keep_the_module_as_it_was():
    plain = make_module(obs_space=IMAGE_SPACE)
    assert len(plain._decoders) == 0
    assert sum(p.numel() for p in plain.parameters()) == sum(
        p.numel() for p in make_module(obs_space=IMAGE_SPACE, prev_action_reward=False, reconstruction_weight=0).parameters())
    out = plain.forward_train({Columns.OBS: dict_obs(1, 2)[ORIG_OBS_KEY], Columns.STATE_IN: initial_state(plain, 1)})
    assert not any(k.startswith("reconstruction_") for k in out)


def test_the_options_need_the_connector_observations():
    with pytest.raises(ValueError, match="needs the previous action and reward in the observations"):
        make_module(obs_space=IMAGE_SPACE, prev_action_reward=True)
    with pytest.raises(ValueError, match="action/reward terms"):
        make_module(obs_space=IMAGE_SPACE, reconstruction_weight={"reward": 1.0})
    make_module(obs_space=IMAGE_SPACE, reconstruction_weight={"image": 1.0})  # the image alone needs none


def test_appo_module_splits_off_the_decoders_for_inference():
    full = make_module(cls=RecurrentCellAPPOModule, prev_action_reward=True, reconstruction_weight=1.0)
    full.make_target_networks()
    batch = {Columns.OBS: dict_obs(2, 4), Columns.STATE_IN: initial_state(full, 2)}
    with torch.no_grad():
        torch.testing.assert_close(full.forward_target(batch)["target_network_action_dist_inputs"],
                                   full.forward_train(batch)[Columns.ACTION_DIST_INPUTS])
    inference = RecurrentCellAPPOModule(observation_space=DICT_SPACE, action_space=ACTIONS, inference_only=True,
                                        model_config=dict(full.model_config))
    assert not hasattr(inference, "_decoders") and not hasattr(inference, "_values")
    inference.set_state(full.get_state(inference_only=True))
    with torch.no_grad():
        torch.testing.assert_close(inference.forward_inference(batch)[Columns.ACTION_DIST_INPUTS],
                                   full.forward_inference(batch)[Columns.ACTION_DIST_INPUTS])


# --- the loss --------------------------------------------------------------------------

def test_reconstruction_loss_is_positive_and_falls_with_training():
    module = make_module(prev_action_reward=True, reconstruction_weight=1.0)
    batch = {Columns.OBS: dict_obs(4, 6), Columns.STATE_IN: initial_state(module, 4)}
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    history = []
    for _ in range(40):
        terms = reconstruction_losses(module, batch, module.forward_train(batch))
        history.append({k: float(v.detach()) for k, v in terms.items()})
        optimizer.zero_grad()
        terms[TOTAL_METRIC].backward()
        optimizer.step()
    first, last = history[0], history[-1]
    assert set(first) == set(METRIC_NAMES.values()) | {TOTAL_METRIC}
    assert all(first[k] > 0 for k in first)
    assert first[TOTAL_METRIC] == pytest.approx(sum(first[m] for m in METRIC_NAMES.values()), rel=1e-5)
    for name in METRIC_NAMES.values():
        assert last[name] < 0.7 * first[name], (name, first[name], last[name])


def test_release_weights_and_the_first_step_mask():
    """Image: 50 x the per-pixel mean squared error (the release's 50 / pixels on a pixel
    sum); reward: 0.5 x squared error; action: cross-entropy, not at an episode's first step."""
    module = make_module(prev_action_reward=True, reconstruction_weight={"image": 2.0, "action": 1.0, "reward": 3.0})
    obs = dict_obs(2, 5)
    batch = {Columns.OBS: obs, Columns.STATE_IN: initial_state(module, 2)}
    with torch.no_grad():
        out = module.forward_train(batch)
        terms = reconstruction_losses(module, batch, out)
        image = obs[ORIG_OBS_KEY].float().reshape(2, 5, -1) / 255.0
        expected_image = 2.0 * 50.0 * (out["reconstruction_image"] - image).pow(2).mean()
        expected_reward = 3.0 * 0.5 * (out["reconstruction_reward"] - obs[PREV_REWARDS_KEY][..., 0]).pow(2).mean()
        labels = obs[PREV_ACTIONS_KEY].reshape(2, 5, 4)[:, 1:].argmax(-1)
        expected_action = torch.nn.functional.cross_entropy(
            out["reconstruction_action"][:, 1:].reshape(-1, 4), labels.reshape(-1))
        mask = torch.ones(2, 5, dtype=torch.bool)
        mask[1, 3:] = False  # zero-padding / the bootstrap step
        masked = reconstruction_losses(module, batch, out, mask)
    torch.testing.assert_close(terms["recon_loss_image"], expected_image)
    torch.testing.assert_close(terms["recon_loss_reward"], expected_reward)
    torch.testing.assert_close(terms["recon_loss_action"], expected_action)
    torch.testing.assert_close(
        masked["recon_loss_reward"],
        3.0 * 0.5 * (out["reconstruction_reward"] - obs[PREV_REWARDS_KEY][..., 0]).pow(2)[mask].mean())


def test_evaluate_builds_observations_as_the_connector_does():
    """`rllib evaluate` steps episodes by hand: its observations must be the connector's."""
    from ray.rllib.connectors.env_to_module import PrevActionsPrevRewards
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    connector = PrevActionsPrevRewards()  # as RLlib builds it: spaces afterwards
    connector.input_action_space = ACTIONS
    connector.input_observation_space = IMAGE_SPACE
    assert connector.observation_space == DICT_SPACE
    episode = SingleAgentEpisode(observation_space=IMAGE_SPACE, action_space=ACTIONS)
    rng = np.random.default_rng(0)
    prev_action, prev_reward = None, 0.0
    for step in range(4):
        obs = rng.integers(0, 256, IMAGE_SPACE.shape, dtype=np.uint8)
        if step == 0:
            episode.add_env_reset(observation=obs)
        else:
            episode.add_env_step(observation=obs, action=prev_action, reward=prev_reward)
        connector(rl_module=None, batch={}, episodes=[episode], explore=False, shared_data={})
        theirs = episode.get_observations(-1)
        ours = prev_action_reward_observation(obs, prev_action, prev_reward, ACTIONS)
        assert set(theirs) == set(ours)
        for key in ours:
            # Same shapes and values; the module casts both to float32 (the connector keeps
            # Python-float rewards as float64).
            assert np.shape(theirs[key]) == ours[key].shape, key
            np.testing.assert_array_equal(np.asarray(theirs[key]).astype(ours[key].dtype), ours[key])
        prev_action, prev_reward = int(rng.integers(4)), float(rng.normal())


# --- validation: before Ray starts -----------------------------------------------------

@pytest.mark.parametrize("options,expected", [
    ({"prev_action_reward": "yes"}, r"model_config\['prev_action_reward'\] must be true or false, got 'yes'"),
    ({"reconstruction_weight": -0.5}, r"model_config\['reconstruction_weight'\] must be a number >= 0, got -0.5"),
    ({"reconstruction_weight": "1"}, r"must be a number >= 0 or a dict with keys image, action, reward"),
    ({"reconstruction_weight": True}, r"must be a number >= 0 or a dict"),
    ({"reconstruction_weight": float("inf")}, r"must be a number >= 0, got inf"),
    ({"reconstruction_weight": {"imag": 1.0}}, r"unknown model_config\['reconstruction_weight'\] key 'imag'. Did you mean 'image'"),
    ({"reconstruction_weight": {"reward": -1}}, r"\['reward'\] must be a number >= 0, got -1"),
    ({"reconstruction_weight": 1.0, "algo": "APPO"}, r"trains through PPO's learner"),
])
def test_bad_options_are_clear_errors(options, expected):
    import ray

    with pytest.raises(ValueError, match=expected):
        memory_agent_config(ENV, env_config=ENV_CONFIG, **options)
    assert not ray.is_initialized()


def test_options_need_discrete_actions_and_keep_a_users_connector():
    with pytest.raises(ValueError, match="need a Discrete action space"):
        memory_agent_config("Pendulum-v1", prev_action_reward=True)
    from memory_agents.rllib.config import apply_model_options

    config = memory_agent_config(ENV, env_config=ENV_CONFIG)
    config.env_runners(env_to_module_connector=lambda env, spaces, device: [])
    config._rl_module_spec.model_config["prev_action_reward"] = True
    with pytest.raises(ValueError, match="the config has one already"):
        apply_model_options(config)


def test_the_config_wiring_follows_the_options():
    from memory_agents.rllib.config import apply_model_options, prev_action_reward_connector
    from memory_agents.rllib.learner import MemoryPPOLearner

    plain = memory_agent_config(ENV, env_config=ENV_CONFIG)
    assert plain._env_to_module_connector is None and plain.learner_class is MemoryPPOLearner
    both = memory_agent_config(ENV, env_config=ENV_CONFIG, prev_action_reward=True, reconstruction_weight=1.0)
    assert both._env_to_module_connector is prev_action_reward_connector
    assert both.learner_class is ReconstructionPPOLearner
    # The image alone needs no connector (the target is the observation).
    image_only = memory_agent_config(ENV, env_config=ENV_CONFIG, reconstruction_weight={"image": 1.0})
    assert image_only._env_to_module_connector is None and image_only.learner_class is ReconstructionPPOLearner
    # `rllib train --config` may turn them off again.
    both._rl_module_spec.model_config.update(prev_action_reward=False, reconstruction_weight=0.0)
    apply_model_options(both)
    assert both._env_to_module_connector is None and both.learner_class is MemoryPPOLearner
    # Algorithms without PPO's learner keep their own.
    impala = memory_agent_config(ENV, algo="IMPALA", env_config=ENV_CONFIG)
    assert impala.learner_class is not MemoryPPOLearner


def test_knobs_and_flags(monkeypatch):
    import runpy
    from pathlib import Path

    from memory_agents.experiments import match

    common = Path(__file__).resolve().parents[1] / "configs" / "visual_match_common.py"
    build = runpy.run_path(str(common))["build"]
    monkeypatch.setenv("MEMORY_AGENTS_PREV_ACTION_REWARD", "1")
    monkeypatch.setenv("MEMORY_AGENTS_RECONSTRUCTION", "0.5")
    config, _ = build("passive", "ur-lstm")
    model_config = config._rl_module_spec.model_config
    assert model_config["prev_action_reward"] is True and model_config["reconstruction_weight"] == 0.5
    assert config.learner_class is ReconstructionPPOLearner
    monkeypatch.setenv("MEMORY_AGENTS_RECONSTRUCTION", "lots")
    with pytest.raises(ValueError, match="MEMORY_AGENTS_RECONSTRUCTION='lots' is not a number"):
        build("passive", "ur-lstm")

    args = match.parse_args(["--prev-action-reward", "--reconstruction-weight", "0.25"])
    assert args.prev_action_reward is True and args.reconstruction_weight == 0.25
    defaults = match.parse_args([])
    assert defaults.prev_action_reward is False and defaults.reconstruction_weight == 0.0


def test_rllib_train_config_overrides_set_the_options(tmp_path, capsys):
    """`rllib train file ... --config '{"model_config": {...}}'` changes the options after the
    config was built: validate_config wires them again; a bad value is one line, exit 2."""
    import ray

    from memory_agents.cli import main
    from memory_agents.rllib import train as training
    from memory_agents.rllib.config import prev_action_reward_connector

    config = memory_agent_config(ENV, env_config=ENV_CONFIG)
    training.apply_overrides(config, {"model_config": {"prev_action_reward": True, "reconstruction_weight": {"image": 1}}})
    training.validate_config(config)
    assert config._env_to_module_connector is prev_action_reward_connector
    assert config.learner_class is ReconstructionPPOLearner
    code = main(["train", "file", "ppo_passive_match_ur_lstm", "--storage-path", str(tmp_path),
                 "--config", '{"model_config": {"reconstruction_weight": {"image": 1, "rewards": 1}}}'])
    err = capsys.readouterr().err
    assert code == 2 and "unknown model_config['reconstruction_weight'] key 'rewards'. Did you mean 'reward'" in err
    assert "Traceback" not in err and not ray.is_initialized() and not any(tmp_path.iterdir())


def test_match_refuses_a_negative_weight_before_ray_starts(tmp_path, capsys):
    import ray

    from memory_agents.experiments import match

    code = match.main(["--storage-path", str(tmp_path), "--reconstruction-weight", "-1", "--cells", "ur-lstm"])
    assert code == 2
    assert "reconstruction_weight'] must be a number >= 0, got -1" in capsys.readouterr().err
    assert not ray.is_initialized() and not any(tmp_path.iterdir())


# --- training, inference and the learner, through RLlib --------------------------------

def small_config(num_learners=0, **options):
    return memory_agent_config(
        ENV, env_config=ENV_CONFIG, cell="ur-lstm", hidden_size=8, num_envs_per_env_runner=2,
        num_epochs=1, train_batch_size=4 * EPISODE, minibatch_size=2 * (EPISODE + 1), evaluation_interval=1,
        evaluation_episodes=2, num_learners=num_learners, **options,
    )


def check_episode_inputs(algo):
    """The connector's values in the sampled episodes (what the learner's batch is built
    from): the one-hot of the action before, and the reward before."""
    sample = lambda runner: runner.sample(num_timesteps=2 * EPISODE, random_actions=False)  # noqa: E731
    if algo.env_runner_group.num_remote_env_runners():  # the shipped default: one remote runner
        (episodes,) = algo.env_runner_group.foreach_env_runner(sample, local_env_runner=False)
    else:
        episodes = sample(algo.env_runner)
    checked = 0
    for episode in episodes:
        observations, actions, rewards = episode.get_observations(), episode.get_actions(), episode.get_rewards()
        start = 0 if episode.t_started == 0 else 1  # a continued chunk's first obs looks back
        for t in range(start, len(actions)):
            prev_actions = observations[PREV_ACTIONS_KEY][t]
            prev_reward = observations[PREV_REWARDS_KEY][t][0]
            if t == 0:
                assert not prev_actions.any() and prev_reward == 0.0
            else:
                assert prev_actions.argmax() == actions[t - 1] and prev_actions.sum() == 1
                assert prev_reward == pytest.approx(rewards[t - 1])
            checked += 1
    assert checked >= EPISODE
    return episodes


OPTIONS = {
    "prev_action_reward": dict(prev_action_reward=True),
    "reconstruction": dict(reconstruction_weight=1.0),
    "both": dict(prev_action_reward=True, reconstruction_weight=1.0),
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_ppo_iteration_with_the_options(name, local_ray, tmp_path):
    from memory_agents.rllib.evaluate import evaluate_checkpoint

    options = OPTIONS[name]
    algo = small_config(**options).build_algo()
    try:
        module = algo.learner_group._learner.module["default_policy"]
        assert isinstance(module.observation_space, gym.spaces.Dict)  # the connector's spaces
        before = {k: np.array(v) for k, v in algo.learner_group.get_weights()["default_policy"].items()}
        result = algo.train()
        after = algo.learner_group.get_weights()["default_policy"]
        assert any(not np.allclose(before[k], after[k]) for k in before)
        stats = result["learners"]["default_policy"]
        assert np.isfinite(stats["total_loss"])
        reconstructs = "reconstruction_weight" in options
        for metric in [*METRIC_NAMES.values(), TOTAL_METRIC]:
            assert (metric in stats) == reconstructs, metric
            if reconstructs:
                assert stats[metric] > 0
        # The decoders have no other loss: they moved, so our terms are in the one minimised.
        decoders = [k for k in before if k.startswith("_decoders.")]
        assert bool(decoders) == reconstructs
        assert all(not np.allclose(before[k], after[k]) for k in decoders)
        assert 0.0 <= result["evaluation"]["env_runners"]["success"] <= 1.0  # inference too
        check_episode_inputs(algo)
        if name == "both":
            algo.save_to_path(str(tmp_path / "checkpoint"))
    finally:
        algo.stop()
    if name == "both":
        evaluated = evaluate_checkpoint(str(tmp_path / "checkpoint"), episodes=4, probe=True)
        assert len(evaluated.returns) == 4 and len(evaluated.probe_states) == 4
        assert evaluated.probe is not None and len(evaluated.successes) == 4


def test_both_options_on_two_learners(local_ray):
    algo = small_config(num_learners=2, prev_action_reward=True, reconstruction_weight=1.0).build_algo()
    try:
        stats = algo.train()["learners"]["default_policy"]
        assert all(stats[m] > 0 for m in [*METRIC_NAMES.values(), TOTAL_METRIC])
        # DDP: both learners applied the same averaged gradients, decoders included.
        copies = [c.get() for c in algo.learner_group.foreach_learner(
            lambda learner: {k: v.detach().numpy().copy()
                             for k, v in learner.module["default_policy"].state_dict().items()})]
        assert any("_decoders" in k for k in copies[0])
        assert all(np.array_equal(copies[0][k], copies[1][k]) for k in copies[0])
    finally:
        algo.stop()
