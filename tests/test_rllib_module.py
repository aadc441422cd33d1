"""RecurrentCellModule without Ray: shapes, state in/out, sequence == step-by-step,
compute_values on padded batches, the APPO variant, clear errors.

    .venv/bin/python -m pytest tests/test_rllib_module.py -q
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from memory_agents.rllib.module import RecurrentCellAPPOModule, RecurrentCellModule

IMAGE_SPACE = gym.spaces.Box(0, 255, (5, 5, 3), np.uint8)
FLAT_SPACE = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
ACTIONS = gym.spaces.Discrete(4)
CELLS = ["ur-lstm", "lstm", "ur-gru", "gru"]


def make_module(cell="ur-lstm", obs_space=IMAGE_SPACE, cls=RecurrentCellModule, **model_config):
    torch.manual_seed(0)
    return cls(
        observation_space=obs_space,
        action_space=ACTIONS,
        model_config={"cell": cell, "hidden_size": 16, "embed_dim": 12, **model_config},
    )


def random_obs(space, batch, time):
    if space.dtype == np.uint8:
        return torch.randint(0, 256, (batch, time, *space.shape), dtype=torch.uint8)
    return torch.randn(batch, time, *space.shape)


def batched_initial_state(module, batch):
    return {
        k: torch.from_numpy(v)[None].repeat(batch, *([1] * v.ndim))
        for k, v in module.get_initial_state().items()
    }


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_and_state(cell):
    module = make_module(cell, num_layers=2)
    state = module.get_initial_state()
    # Unbatched initial state: (num_layers, hidden); (h,) for GRUs, (h, c) for LSTMs.
    assert sorted(state) == (["h"] if "gru" in cell else ["c", "h"])
    assert all(v.shape == (2, 16) and v.dtype == np.float32 and not v.any() for v in state.values())

    batch = {Columns.OBS: random_obs(IMAGE_SPACE, 3, 7), Columns.STATE_IN: batched_initial_state(module, 3)}
    out = module.forward_train(batch)
    assert out[Columns.ACTION_DIST_INPUTS].shape == (3, 7, 4)
    assert out[Columns.EMBEDDINGS].shape == (3, 7, 16)
    assert set(out[Columns.STATE_OUT]) == set(state)
    for value in out[Columns.STATE_OUT].values():
        assert value.shape == (3, 2, 16)
        assert value.abs().sum() > 0  # the state moved away from zeros
    assert module.compute_values(batch).shape == (3, 7)
    assert module.model_config["max_seq_len"] > 0  # the learner connector reads it


@pytest.mark.parametrize("cell", CELLS)
def test_step_by_step_equals_whole_sequence(cell):
    """What env runners do (T=1, carry STATE_OUT -> STATE_IN) equals the learner's unroll."""
    module = make_module(cell)
    B, T = 2, 9
    obs = random_obs(IMAGE_SPACE, B, T)
    with torch.no_grad():
        whole = module.forward_train({Columns.OBS: obs, Columns.STATE_IN: batched_initial_state(module, B)})
        state, logits = batched_initial_state(module, B), []
        for t in range(T):
            out = module.forward_exploration({Columns.OBS: obs[:, t : t + 1], Columns.STATE_IN: state})
            logits.append(out[Columns.ACTION_DIST_INPUTS])
            state = out[Columns.STATE_OUT]
    torch.testing.assert_close(torch.cat(logits, 1), whole[Columns.ACTION_DIST_INPUTS], atol=1e-5, rtol=1e-5)
    for key in state:
        torch.testing.assert_close(state[key], whole[Columns.STATE_OUT][key], atol=1e-5, rtol=1e-5)


def test_chunks_continue_from_state_in():
    """Learner chunks of an episode start from the STATE_IN the env runner stored."""
    module = make_module("ur-lstm", obs_space=FLAT_SPACE)
    obs = random_obs(FLAT_SPACE, 2, 10)
    with torch.no_grad():
        whole = module.forward_train({Columns.OBS: obs, Columns.STATE_IN: batched_initial_state(module, 2)})
        first = module.forward_train({Columns.OBS: obs[:, :4], Columns.STATE_IN: batched_initial_state(module, 2)})
        second = module.forward_train({Columns.OBS: obs[:, 4:], Columns.STATE_IN: first[Columns.STATE_OUT]})
        fresh = module.forward_train({Columns.OBS: obs[:, 4:], Columns.STATE_IN: batched_initial_state(module, 2)})
    expected = whole[Columns.ACTION_DIST_INPUTS][:, 4:]
    torch.testing.assert_close(second[Columns.ACTION_DIST_INPUTS], expected, atol=1e-5, rtol=1e-5)
    # Control: without the carried state the outputs differ, so the check above has teeth.
    assert not torch.allclose(fresh[Columns.ACTION_DIST_INPUTS], expected, atol=1e-3)


def test_compute_values_on_padded_batch():
    """GAE calls compute_values on zero-padded (B, max_seq_len) sequences; padding is inert."""
    module = make_module("ur-gru")
    lengths, max_len = [5, 2, 8], 8
    episodes = [random_obs(IMAGE_SPACE, 1, n)[0] for n in lengths]
    padded = torch.zeros(len(lengths), max_len, *IMAGE_SPACE.shape, dtype=torch.uint8)
    for i, episode in enumerate(episodes):
        padded[i, : len(episode)] = episode
    with torch.no_grad():
        values = module.compute_values(
            {Columns.OBS: padded, Columns.STATE_IN: batched_initial_state(module, len(lengths))}
        )
        assert values.shape == (3, max_len)
        for i, episode in enumerate(episodes):
            alone = module.compute_values(
                {Columns.OBS: episode[None], Columns.STATE_IN: batched_initial_state(module, 1)}
            )
            torch.testing.assert_close(values[i, : lengths[i]], alone[0], atol=1e-5, rtol=1e-5)
        # compute_values with the train pass's embeddings gives the same numbers.
        out = module.forward_train({Columns.OBS: padded, Columns.STATE_IN: batched_initial_state(module, 3)})
        torch.testing.assert_close(module.compute_values({}, out[Columns.EMBEDDINGS]), values)


def test_value_targets_take_no_gradient_and_the_loss_values_do():
    """GAE's call (no embeddings) runs without autograd; the loss's call (the train pass's
    embeddings) keeps the graph, so the value loss still trains the shared core."""
    module = make_module()
    batch = {Columns.OBS: random_obs(IMAGE_SPACE, 2, 6), Columns.STATE_IN: batched_initial_state(module, 2)}
    targets = module.compute_values(batch)
    assert not targets.requires_grad
    out = module.forward_train(batch)
    values = module.compute_values(batch, out[Columns.EMBEDDINGS])
    assert values.requires_grad
    torch.testing.assert_close(values.detach(), targets)
    values.sum().backward()
    assert module._rnn.cells[0].weight_hh.grad.abs().sum() > 0


def test_encoder_sizes_from_model_config():
    """Default: convs of 16 and 32 channels, then 800 -> 256 (407,909 parameters with the
    ur-lstm core of 128); one conv of 16 and 400 -> 128, the faster option, has 184,005."""
    module = RecurrentCellModule(observation_space=IMAGE_SPACE, action_space=ACTIONS,
                                 model_config={"cell": "ur-lstm"})
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(16, (3, 3)), (32, (3, 3))]
    assert module._encoder.net[-2].weight.shape == (256, 32 * 5 * 5)
    assert sum(p.numel() for p in module.parameters()) == 407_909
    small = RecurrentCellModule(observation_space=IMAGE_SPACE, action_space=ACTIONS, model_config={
        "cell": "ur-lstm", "conv_filters": [[16, 3, 1]], "embed_dim": 128})
    assert small._encoder.net[-2].weight.shape == (128, 16 * 5 * 5)
    assert sum(p.numel() for p in small.parameters()) == 184_005


def test_flat_observations_use_an_mlp_and_images_a_cnn():
    flat = make_module("lstm", obs_space=FLAT_SPACE)
    image = make_module("lstm")
    assert not any(isinstance(m, torch.nn.Conv2d) for m in flat.modules())
    assert any(isinstance(m, torch.nn.Conv2d) for m in image.modules())
    out = flat.forward_inference(
        {Columns.OBS: random_obs(FLAT_SPACE, 4, 1), Columns.STATE_IN: batched_initial_state(flat, 4)}
    )
    assert out[Columns.ACTION_DIST_INPUTS].shape == (4, 1, 4)


def test_appo_target_network_matches_main_network_after_copy():
    module = make_module("ur-lstm", cls=RecurrentCellAPPOModule)
    module.make_target_networks()
    batch = {Columns.OBS: random_obs(IMAGE_SPACE, 2, 5), Columns.STATE_IN: batched_initial_state(module, 2)}
    with torch.no_grad():
        main = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
        target = module.forward_target(batch)["target_network_action_dist_inputs"]
    torch.testing.assert_close(target, main)
    assert len(module.get_target_network_pairs()) == 4
    assert "_values" in module.get_non_inference_attributes()


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown model_config\['cell'\] 'ur-lstmm' \(did you mean 'ur-lstm'"):
        make_module("ur-lstmm")


def test_unsupported_observation_space_is_a_clear_error():
    with pytest.raises(ValueError, match="Box"):
        make_module("lstm", obs_space=gym.spaces.Discrete(3))


def test_core_skip_lets_the_heads_see_the_current_observation():
    """With core_skip the heads read the encoding beside the core's output: the logits then
    change with the current observation even where the core's output is held fixed."""
    module = make_module("ur-lstm", core_skip=True, head_hiddens=[8])
    assert module._head_net[0].in_features == 16 + 12  # hidden + embed_dim
    plain = make_module("ur-lstm", head_hiddens=[8])
    assert plain._head_net[0].in_features == 16
    batch = {Columns.OBS: random_obs(IMAGE_SPACE, 2, 6), Columns.STATE_IN: batched_initial_state(module, 2)}
    with torch.no_grad():
        out = module.forward_train(batch)
        # Zero the core's output weights' effect: a core that outputs nothing still acts on x.
        x = module._core_input(batch[Columns.OBS], module._encoder)
        logits = module._pi_head(module._head_net(module._head_input(torch.zeros(2, 6, 16), x)))
    assert logits.std(dim=(0, 1)).abs().sum() > 0
    assert out[Columns.ACTION_DIST_INPUTS].shape == (2, 6, 4)
    # The sequence equals stepping, with the skip as without.
    state, stepped = batched_initial_state(module, 2), []
    with torch.no_grad():
        for t in range(6):
            step = module.forward_exploration({Columns.OBS: batch[Columns.OBS][:, t : t + 1], Columns.STATE_IN: state})
            stepped.append(step[Columns.ACTION_DIST_INPUTS])
            state = step[Columns.STATE_OUT]
    torch.testing.assert_close(torch.cat(stepped, 1), out[Columns.ACTION_DIST_INPUTS], atol=1e-5, rtol=1e-5)
    appo = make_module("ur-lstm", cls=RecurrentCellAPPOModule, core_skip=True)
    appo.make_target_networks()
    with torch.no_grad():
        torch.testing.assert_close(appo.forward_target(batch)["target_network_action_dist_inputs"],
                                   appo.forward_train(batch)[Columns.ACTION_DIST_INPUTS])
    with pytest.raises(ValueError, match=r"model_config\['core_skip'\] must be true or false"):
        make_module("ur-lstm", core_skip="yes")
