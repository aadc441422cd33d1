"""A recurrent RLlib RLModule whose memory is any gated cell of `memory_agents.cells`.

Obs encoder (small CNN for image observations, MLP for flat ones) -> recurrent core
(`build_rnn(model_config["cell"])`, e.g. the UR-LSTM) -> policy logits and a value head
that share the core, like the agents of Hung et al. (2018). New API stack only: the
pattern is RLlib's `examples/rl_modules/classes/lstm_containing_rlm.py`.

How to run it (PPO on Passive Visual Match with a 30-step delay)::

    rllib train file configs/ppo_passive_match_ur_lstm.py
    MEMORY_AGENTS_CELL=lstm rllib train file configs/ppo_passive_match_ur_lstm.py

or from Python::

    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from memory_agents.rllib import RecurrentCellModule

    config = PPOConfig().environment("envs:memory_agents/PassiveVisualMatch-Delay30-v0").rl_module(
        rl_module_spec=RLModuleSpec(
            module_class=RecurrentCellModule,
            model_config={"cell": "ur-lstm", "hidden_size": 256, "max_seq_len": 60},
        )
    )

`model_config` keys (all optional; `check_model_config` rejects any other key, and bad
values, when the config is built, before Ray starts):

- ``cell`` ("ur-lstm"): any name of `memory_agents.cells.available_cells()`.
- ``hidden_size`` (128), ``num_layers`` (1): the recurrent core.
- ``embed_dim`` (256): width of the obs encoder's output (the core's input).
- ``conv_filters`` ([[16, 3, 1], [32, 3, 1]]): image encoder, ``[out_channels, kernel,
  stride]`` per layer, "same" padding, ReLU; then a linear layer to ``embed_dim`` (why this
  size: `memory_agents.rllib.defaults`). RLlib's
  form ``[16, [3, 3], 1]`` (kernel and stride as ``[h, w]`` pairs) is accepted too.
- ``fcnet_hiddens`` ([256]): flat encoder, hidden widths of the MLP before ``embed_dim``.
- ``head_hiddens`` ([]): hidden widths of an MLP after the core, before both heads.
- ``core_skip`` (False): the heads read the core's input (the observation's encoding) beside
  its output, so that they can compare what is in view with what the core remembers
  without the core computing the comparison itself. The release's controller is a 2-layer
  LSTM "with skip connections" (tvt/rma.py); this is the same idea for one layer.
- ``max_seq_len`` (256): training sequence length; RLlib zero-pads chunks to it. Make it
  cover a whole episode (`memory_agents.rllib.memory_agent_config` does): a shorter
  window cuts the memory horizon and made learning unstable.
- ``prev_action_reward`` (False): the one-hot last action and the last reward are inputs of
  the core, concatenated to the observation encoding, as in DeepMind's TVT release.
- ``reconstruction_weight`` (0.0 = off): an auxiliary loss that reconstructs the observation,
  the last action and the last reward from the core's input; a number (all three terms) or
  ``{"image": w, "action": w, "reward": w}``, in multiples of the release's weights.
  Trained by `memory_agents.rllib.learner.ReconstructionPPOLearner` (PPO).

Both options need the previous action and reward in the observations: RLlib's
`PrevActionsPrevRewards` env-to-module connector writes them into every episode (so the
learner's batches hold them too) and the module's observation space becomes its Dict
(``_orig_obs``, ``prev_n_actions``, ``prev_n_rewards``). `memory_agent_config` (through
`memory_agents.rllib.config.apply_model_options`) adds the connector and the learner class
whenever the options ask for them.

The release, at google-deepmind/deepmind-research commit
152ac280f2011f9172444871c7c4b02590eb8984 (`RELEASE_COMMIT`), and where we differ on purpose:

- Inputs: tvt/rma.py:444-458 (`Agent._encode`) concatenates the image code, ``one_hot(last
  action)`` (451) and the raw last reward (454) into the features the core reads. Same here,
  raw reward included. At an episode's first step the release feeds action 0 (its zero
  ``prev_action``, rma.py:424, and the dummy zeroth action, rma.py:500-501); RLlib's connector
  feeds an all-zero vector (no action yet), and so does `rllib evaluate`.
- Reconstruction: the release decodes from its latent ``z`` (rma.py:461-477, `_decode`; ``z``
  = an MLP of the features, the previous controller output and memory reads, rma.py:307-311),
  the image through a linear layer and the transposed encoder (rma.py:125-136), the action and
  reward through linear layers (rma.py:466, 469). Our module has no ``z``: the decoders read
  the core's input (encoder output, plus the previous action and reward when
  ``prev_action_reward`` is on), the image through a one-hidden-layer MLP. With
  ``prev_action_reward`` on, the action and reward decoders see their own targets in that
  input, so those two terms only train the decoders; the image term trains the encoder.
  With it off they must predict the previous action and reward from the current observation's
  encoding (the targets still come from the episode, through the connector).
- Losses (tvt/losses.py:43-86 `reconstruction_losses`, weights at rma.py:522-529): the image
  term is a Bernoulli negative log-likelihood (sigmoid cross-entropy, losses.py:52-55) summed
  over pixels times ``image_cost_weight / total_num_pixels`` = 50 / pixels (rma.py:383, 408,
  527; main.py:53), i.e. 50 x the per-pixel mean; the action term a softmax cross-entropy
  (losses.py:62) times 1 (rma.py:528); the reward term ``0.5 * (r_hat - r)**2`` (losses.py:72)
  times 1 (rma.py:529). Here the image term is the per-pixel mean *squared error* of the
  [0, 1]-scaled observation (not the Bernoulli likelihood), times 50 x the weight; action and
  reward as the release, times 1 x the weight. The release sums each term over time and
  averages over the batch (losses.py:26-29), as it does its A2C loss; here every term is a
  mean over the valid time steps, as PPO's own loss is, so the ratio to the RL loss is kept.
  The first step of an episode (no previous action) is left out of the action term.

Expected results (README, "Learning results"): with the shipped PPO settings the UR-LSTM
agent learns Passive Visual Match with a 30-step delay and the reward room's colours in a
fixed order (3 of 3 seeds at 100% greedy success within 0.8M env steps; the LSTM 1 of 3).
With the colour order drawn per episode both cells stayed at chance (1/3) in our runs.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ray.rllib.connectors.env_to_module.prev_actions_prev_rewards import PrevActionsPrevRewards
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import (
    TARGET_NETWORK_ACTION_DIST_INPUTS,
    InferenceOnlyAPI,
    TargetNetworkAPI,
    ValueFunctionAPI,
)
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.typing import NetworkType, TensorType

from memory_agents.cells import build_rnn
from memory_agents.cells.config import check_cell_name
from memory_agents.rllib import defaults

DEFAULT_MAX_SEQ_LEN = 256
#: Every `model_config` key the module reads, with its default.
MODEL_CONFIG_DEFAULTS: Dict[str, Any] = {
    "cell": "ur-lstm",
    "hidden_size": defaults.HIDDEN_SIZE,
    "num_layers": 1,
    "embed_dim": defaults.EMBED_DIM,
    "conv_filters": defaults.CONV_FILTERS,
    "fcnet_hiddens": [256],
    "head_hiddens": [],
    "core_skip": False,
    "max_seq_len": DEFAULT_MAX_SEQ_LEN,
    "prev_action_reward": defaults.PREV_ACTION_REWARD,
    "reconstruction_weight": defaults.RECONSTRUCTION_WEIGHT,
}

STATE_KEYS = ("h", "c")

#: The commit of google-deepmind/deepmind-research whose tvt/ files the line numbers cite.
RELEASE_COMMIT = "152ac280f2011f9172444871c7c4b02590eb8984"
#: The reconstruction terms, in the release's order (tvt/rma.py:46-47, `Observation`).
RECONSTRUCTION_TERMS = ("image", "action", "reward")
#: The release's weight of each term on our per-step scale: the image loss is
#: 50 / pixels times the sum over pixels (tvt/rma.py:383, 408, 527), i.e. 50 times the
#: per-pixel mean that we compute; action and reward 1 (rma.py:528-529).
#: `reconstruction_weight` multiplies these.
RELEASE_RECONSTRUCTION_WEIGHTS: Dict[str, float] = {"image": 50.0, "action": 1.0, "reward": 1.0}
#: The keys of RLlib's `PrevActionsPrevRewards` observations (a Dict space).
ORIG_OBS_KEY = PrevActionsPrevRewards.ORIG_OBS_KEY
PREV_ACTIONS_KEY = PrevActionsPrevRewards.PREV_ACTIONS_KEY
PREV_REWARDS_KEY = PrevActionsPrevRewards.PREV_REWARDS_KEY
#: `forward_train` outputs of the decoders, one per reconstruction term.
RECONSTRUCTION_OUTPUTS = {term: f"reconstruction_{term}" for term in RECONSTRUCTION_TERMS}


def unknown_key_error(kind: str, key: str, valid: List[str], list_valid: bool = True) -> ValueError:
    """A ValueError naming an unknown key and the closest valid ones (and all, if few)."""
    import difflib

    close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
    text = f"unknown {kind} key {key!r}."
    if close:
        text += f" Did you mean {' or '.join(repr(c) for c in close)}?"
    if list_valid:
        text += f" Valid keys: {', '.join(sorted(valid))}"
    elif not close:
        text += " (keys are AlgorithmConfig settings, e.g. 'lr', 'gamma', 'num_env_runners')"
    return ValueError(text)


def _rllib_model_keys() -> set:
    from dataclasses import fields

    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    return {f.name for f in fields(DefaultModelConfig)}


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"model_config[{name!r}] must be an integer >= 1, got {value!r}")
    return int(value)


def _int_pair(name: str, value: Any) -> Tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return _positive_int(name, value[0]), _positive_int(name, value[1])
    number = _positive_int(name, value)
    return number, number


def normalize_conv_filters(filters: Any) -> List[List[Any]]:
    """``[[out, kernel, stride], ...]`` with kernel/stride as ints or RLlib's ``[h, w]`` pairs,
    as ``[[out, (kh, kw), (sh, sw)], ...]``; a ValueError saying what is wrong otherwise."""
    if not isinstance(filters, (list, tuple)) or not filters:
        raise ValueError(f"model_config['conv_filters'] must be a non-empty list of "
                         f"[out_channels, kernel, stride], got {filters!r}")
    normalized = []
    for layer in filters:
        if not isinstance(layer, (list, tuple)) or len(layer) != 3:
            raise ValueError(f"model_config['conv_filters'] entry {layer!r} is not "
                             f"[out_channels, kernel, stride] (e.g. [16, 3, 1] or [16, [3, 3], 1])")
        out, kernel, stride = layer
        normalized.append([_positive_int("conv_filters", out), _int_pair("conv_filters", kernel),
                           _int_pair("conv_filters", stride)])
    return normalized


def _weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def reconstruction_weights(value: Any) -> Dict[str, float]:
    """``model_config["reconstruction_weight"]`` as ``{"image", "action", "reward"}`` weights
    (multiples of `RELEASE_RECONSTRUCTION_WEIGHTS`); ValueError naming what is wrong.

    A number weighs all three terms alike; a dict names some of them (the others are 0).
    """
    name = "model_config['reconstruction_weight']"
    if isinstance(value, dict):
        for key in value:
            if key not in RECONSTRUCTION_TERMS:
                raise unknown_key_error(name, key, list(RECONSTRUCTION_TERMS))
        return {term: _weight(f"{name}[{term!r}]", value.get(term, 0.0)) for term in RECONSTRUCTION_TERMS}
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number >= 0 or a dict with keys "
                         f"{', '.join(RECONSTRUCTION_TERMS)}, got {value!r}")
    weight = _weight(name, value)
    return {term: weight for term in RECONSTRUCTION_TERMS}


def needs_prev_action_reward(cfg: Dict[str, Any]) -> bool:
    """Whether a checked model_config needs the previous action and reward in the
    observations: as core inputs, or as targets of the action/reward reconstructions."""
    weights = cfg["reconstruction_weight"]
    return bool(cfg["prev_action_reward"] or weights["action"] > 0 or weights["reward"] > 0)


def prev_action_reward_observation(obs: Any, prev_action: Optional[int], prev_reward: float,
                                   action_space: gym.spaces.Discrete) -> Dict[str, np.ndarray]:
    """One observation as RLlib's `PrevActionsPrevRewards` connector writes it into an
    episode: the env's observation, the one-hot previous action (all zeros before the first
    action) and the previous reward (0.0 before the first step). `rllib evaluate` uses it.

    Shapes as the connector makes them: the actions (1, n_actions) -- one stacked previous
    action, although its space says (n_actions,) -- and the rewards (1,)."""
    one_hot = np.zeros((1, int(action_space.n)), dtype=np.float32)
    if prev_action is not None:
        one_hot[0, int(prev_action)] = 1.0
    return {
        ORIG_OBS_KEY: np.asarray(obs),
        PREV_ACTIONS_KEY: one_hot,
        PREV_REWARDS_KEY: np.array([prev_reward], dtype=np.float32),
    }


def check_model_config(model_config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """`model_config` with defaults filled in and values checked; ValueError naming the key.

    The one validator: `memory_agent_config` and `rllib train` call it when the config is
    built (before Ray starts), and the module calls it again in `setup()`.
    """
    given = dict(model_config or {})
    for key in given:
        if key not in MODEL_CONFIG_DEFAULTS:
            raise unknown_key_error("model_config", key, list(MODEL_CONFIG_DEFAULTS))
    cfg = {**MODEL_CONFIG_DEFAULTS, **given}
    cfg["cell"] = check_cell_name(cfg["cell"], "model_config['cell']")
    for key in ("hidden_size", "num_layers", "embed_dim", "max_seq_len"):
        cfg[key] = _positive_int(key, cfg[key])
    for key in ("fcnet_hiddens", "head_hiddens"):
        if not isinstance(cfg[key], (list, tuple)):
            raise ValueError(f"model_config[{key!r}] must be a list of layer widths, got {cfg[key]!r}")
        cfg[key] = [_positive_int(key, width) for width in cfg[key]]
    cfg["conv_filters"] = normalize_conv_filters(cfg["conv_filters"])
    if not isinstance(cfg["prev_action_reward"], (bool, np.bool_)):
        raise ValueError(f"model_config['prev_action_reward'] must be true or false, "
                         f"got {cfg['prev_action_reward']!r}")
    cfg["prev_action_reward"] = bool(cfg["prev_action_reward"])
    for key in ("core_skip",):
        if not isinstance(cfg[key], (bool, np.bool_)):
            raise ValueError(f"model_config[{key!r}] must be true or false, got {cfg[key]!r}")
        cfg[key] = bool(cfg[key])
    cfg["reconstruction_weight"] = reconstruction_weights(cfg["reconstruction_weight"])
    return cfg


class _ObsEncoder(nn.Module):
    """Maps a Box observation of shape (B, T, *obs_shape) to (B, T, embed_dim).

    Image observations (3-D Box, channels last) go through a small "same"-padded CNN,
    flat ones (1-D Box) through an MLP. Bounded boxes are rescaled to [0, 1] first, so
    uint8 pixels and small integer codes need no preprocessing connector.
    """

    def __init__(self, obs_space: gym.Space, model_config: Dict[str, Any]):
        super().__init__()
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) not in (1, 3):
            raise ValueError(
                f"RecurrentCellModule needs a 1-D (flat) or 3-D (image, channels last) Box "
                f"observation space, got {obs_space}. Flatten other spaces with a connector "
                f"(e.g. ray.rllib.connectors.env_to_module.FlattenObservations)."
            )
        self.obs_shape = tuple(obs_space.shape)
        self.embed_dim = model_config["embed_dim"]
        low = np.asarray(obs_space.low, dtype=np.float64)
        high = np.asarray(obs_space.high, dtype=np.float64)
        bounded = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high > low))
        # Buffers (not parameters): saved with the module, moved with .to(device).
        self.register_buffer("offset", torch.as_tensor(low if bounded else 0.0, dtype=torch.float32))
        self.register_buffer(
            "scale", torch.as_tensor(1.0 / (high - low) if bounded else 1.0, dtype=torch.float32)
        )
        self.is_image = len(self.obs_shape) == 3
        layers: List[nn.Module] = []
        if self.is_image:
            height, width, channels = self.obs_shape
            for out_channels, (kh, kw), (sh, sw) in model_config["conv_filters"]:
                layers += [
                    nn.Conv2d(channels, out_channels, (kh, kw), (sh, sw), padding=(kh // 2, kw // 2)),
                    nn.ReLU(),
                ]
                channels = out_channels
                height = (height + 2 * (kh // 2) - kh) // sh + 1
                width = (width + 2 * (kw // 2) - kw) // sw + 1
            layers.append(nn.Flatten())
            in_size = channels * height * width
        else:
            in_size = self.obs_shape[0]
            for width in model_config["fcnet_hiddens"]:
                layers += [nn.Linear(in_size, width), nn.ReLU()]
                in_size = width
        layers += [nn.Linear(in_size, self.embed_dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def scaled(self, obs: torch.Tensor) -> torch.Tensor:
        """(N, *obs_shape) float observations, rescaled as the encoder sees them."""
        return (obs.reshape(-1, *self.obs_shape).float() - self.offset) * self.scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch_time = obs.shape[: obs.dim() - len(self.obs_shape)]
        x = self.scaled(obs)
        if self.is_image:
            x = x.permute(0, 3, 1, 2)  # NHWC (gymnasium) -> NCHW (torch)
        return self.net(x).reshape(*batch_time, self.embed_dim)


class RecurrentCellModule(TorchRLModule, ValueFunctionAPI):
    """Encoder -> gated recurrent core (any `build_rnn` preset) -> policy and value heads.

    Works with PPO and IMPALA (new API stack). For APPO use `RecurrentCellAPPOModule`,
    which adds the target networks APPO needs.

    Inputs: ``batch[Columns.OBS]`` of shape (B, T, *obs_shape) -- or, behind RLlib's
    `PrevActionsPrevRewards` connector, a dict of ``_orig_obs`` (B, T, *obs_shape),
    ``prev_n_actions`` (B, T, 1, n_actions) or (B, T, n_actions) and ``prev_n_rewards``
    (B, T, 1) -- and
    ``batch[Columns.STATE_IN]``, a dict ``{"h": (B, L, H)}`` (GRU family) or
    ``{"h": ..., "c": ...}`` (LSTM family), L = num_layers, H = hidden_size.
    Outputs: ``Columns.ACTION_DIST_INPUTS`` (B, T, n_logits) and ``Columns.STATE_OUT``
    (same structure as STATE_IN) -- the state after the last time step. With
    ``reconstruction_weight``, `forward_train` adds the decoders' outputs
    (`RECONSTRUCTION_OUTPUTS`): ``reconstruction_image`` (B, T, prod(obs_shape)),
    ``reconstruction_action`` (B, T, n_actions, logits), ``reconstruction_reward`` (B, T).

    Example::

        module = RecurrentCellModule(
            observation_space=gym.spaces.Box(0, 255, (5, 5, 3), np.uint8),
            action_space=gym.spaces.Discrete(4),
            model_config={"cell": "ur-lstm", "hidden_size": 64},
        )
        state = {k: torch.from_numpy(v)[None] for k, v in module.get_initial_state().items()}
        out = module.forward_inference({Columns.OBS: obs_b1, Columns.STATE_IN: state})
    """

    @override(TorchRLModule)
    def setup(self):
        # RLlib adds its own defaults (PPO: vf_share_layers); the module ignores those.
        cfg = check_model_config({k: v for k, v in (self.model_config or {}).items()
                                  if k in MODEL_CONFIG_DEFAULTS or k not in _rllib_model_keys()})
        self.cell = cfg["cell"]
        self.hidden_size = cfg["hidden_size"]
        self.num_layers = cfg["num_layers"]
        self.prev_action_reward = cfg["prev_action_reward"]
        self.reconstruction_weights = cfg["reconstruction_weight"]
        # The learner connector reads model_config["max_seq_len"]; fill in the default.
        if isinstance(self.model_config, dict):
            self.model_config.setdefault("max_seq_len", cfg["max_seq_len"])

        #: The env's observation space (without the connector's previous action/reward).
        self.env_observation_space = self._env_observation_space(cfg)
        self._encoder = _ObsEncoder(self.env_observation_space, cfg)
        core_input_size = self._encoder.embed_dim
        if self.prev_action_reward:
            # One-hot last action and last reward after the encoding (tvt/rma.py:451-456).
            core_input_size += int(self.action_space.n) + 1
        self._rnn = build_rnn(
            self.cell,
            input_size=core_input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            batch_first=True,
        )
        # Keys ("h",) for the GRU family, ("h", "c") for the LSTM family: the core knows which.
        self._state_keys = STATE_KEYS[: self._rnn.num_state_tensors]

        layers: List[nn.Module] = []
        self.core_skip = cfg["core_skip"]
        in_size = self.hidden_size + (core_input_size if self.core_skip else 0)
        for width in cfg["head_hiddens"]:
            layers += [nn.Linear(in_size, width), nn.ReLU()]
            in_size = width
        self._head_net = nn.Sequential(*layers)

        if isinstance(self.action_space, gym.spaces.Discrete):
            n_logits = int(self.action_space.n)
        elif isinstance(self.action_space, gym.spaces.Box) and len(self.action_space.shape) == 1:
            n_logits = 2 * int(self.action_space.shape[0])  # mean and log-std (DiagGaussian)
        else:
            raise ValueError(
                f"RecurrentCellModule supports Discrete or 1-D Box actions, got {self.action_space}"
            )
        self._pi_head = nn.Linear(in_size, n_logits)
        self._values = nn.Linear(in_size, 1)

        # Decoders of the auxiliary reconstructions, from the core's input (the release
        # decodes from its latent z, tvt/rma.py:461-477; we have none): only those with a
        # weight, so an agent without them has exactly the parameters it had before.
        self._decoders = nn.ModuleDict()
        weights = self.reconstruction_weights
        if weights["image"] > 0:
            self._decoders["image"] = nn.Sequential(
                nn.Linear(core_input_size, self._encoder.embed_dim), nn.ReLU(),
                nn.Linear(self._encoder.embed_dim, int(np.prod(self.env_observation_space.shape))),
            )
        if weights["action"] > 0:
            self._decoders["action"] = nn.Linear(core_input_size, int(self.action_space.n))
        if weights["reward"] > 0:
            self._decoders["reward"] = nn.Linear(core_input_size, 1)

    def _env_observation_space(self, cfg: Dict[str, Any]) -> gym.Space:
        """The image (or flat) observation space, checking that the connector's previous
        action and reward are there when `cfg` needs them."""
        space = self.observation_space
        self._has_prev_inputs = isinstance(space, gym.spaces.Dict) and ORIG_OBS_KEY in space.spaces
        if self._has_prev_inputs:
            expected = {ORIG_OBS_KEY, PREV_ACTIONS_KEY, PREV_REWARDS_KEY}
            n_actions = getattr(self.action_space, "n", None)
            if set(space.spaces) != expected or space[PREV_REWARDS_KEY].shape != (1,) or (
                    n_actions is not None and space[PREV_ACTIONS_KEY].shape != (int(n_actions),)):
                raise ValueError(f"RecurrentCellModule takes RLlib's PrevActionsPrevRewards "
                                 f"observations with one previous action and reward "
                                 f"(keys {sorted(expected)}), got {space}")
            space = space[ORIG_OBS_KEY]
        if needs_prev_action_reward(cfg):
            what = ("model_config['prev_action_reward']" if cfg["prev_action_reward"]
                    else "the action/reward terms of model_config['reconstruction_weight']")
            if not isinstance(self.action_space, gym.spaces.Discrete):
                raise ValueError(f"{what} needs a Discrete action space (a one-hot last "
                                 f"action), got {self.action_space}")
            if not self._has_prev_inputs:
                raise ValueError(
                    f"{what} needs the previous action and reward in the observations: add "
                    f"RLlib's PrevActionsPrevRewards env-to-module connector "
                    f"(memory_agents.rllib.memory_agent_config and apply_model_options do), "
                    f"got observation space {self.observation_space}"
                )
        return space

    @override(TorchRLModule)
    def get_initial_state(self) -> Dict[str, np.ndarray]:
        # Unbatched: RLlib stacks one copy per episode.
        shape = (self.num_layers, self.hidden_size)
        return {key: np.zeros(shape, dtype=np.float32) for key in self._state_keys}

    @override(TorchRLModule)
    def _forward(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        embeddings, state_out = self._unroll(batch)
        return {
            Columns.ACTION_DIST_INPUTS: self._pi_head(embeddings),
            Columns.STATE_OUT: state_out,
        }

    @override(TorchRLModule)
    def _forward_train(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        # Keep the embeddings: PPO's loss passes them to compute_values (shared core).
        embeddings, state_out, core_input = self._unroll(batch, return_core_input=True)
        out = {
            Columns.ACTION_DIST_INPUTS: self._pi_head(embeddings),
            Columns.STATE_OUT: state_out,
            Columns.EMBEDDINGS: embeddings,
        }
        # Decoded here, inside the forward pass (what torch DDP wraps), for the learner's
        # reconstruction loss (memory_agents.rllib.learner).
        for term, decoder in self._decoders.items():
            decoded = decoder(core_input)
            out[RECONSTRUCTION_OUTPUTS[term]] = decoded.squeeze(-1) if term == "reward" else decoded
        return out

    def reconstruction_targets(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """What the decoders reconstruct, from the batch: ``image`` (B, T, prod(obs_shape)),
        the observation scaled to [0, 1] as the encoder sees it (the release's image / 255,
        tvt/rma.py:431); ``action`` (B, T, n_actions), the one-hot previous action (all
        zeros at an episode's first step); ``reward`` (B, T), the previous reward."""
        obs = batch[Columns.OBS]
        image = obs[ORIG_OBS_KEY] if self._has_prev_inputs else obs
        batch_time = image.shape[: image.dim() - len(self._encoder.obs_shape)]
        targets = {"image": self._encoder.scaled(image).reshape(*batch_time, -1)}
        if self._has_prev_inputs:
            prev_actions, prev_rewards = self._prev_action_reward(obs, batch_time)
            targets["action"] = prev_actions.float()
            targets["reward"] = prev_rewards.float()[..., 0]
        return targets

    @staticmethod
    def _prev_action_reward(obs: Dict[str, torch.Tensor], batch_time) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_actions) previous actions and (B, T, 1) previous rewards. The connector
        stacks its one previous action as (1, n_actions) per step (its space says
        (n_actions,)): flatten whatever comes after (B, T)."""
        return (obs[PREV_ACTIONS_KEY].reshape(*batch_time, -1),
                obs[PREV_REWARDS_KEY].reshape(*batch_time, -1))

    @override(ValueFunctionAPI)
    def compute_values(
        self, batch: Dict[str, Any], embeddings: Optional[Any] = None
    ) -> TensorType:
        # Every RLlib loss (PPO, APPO, IMPALA) passes the embeddings of its forward_train,
        # so values come from the same unroll as the policy. Without them the caller is
        # GAE's value targets, on (B, T)-padded sequences plus STATE_IN: unroll the core
        # here (padding sits at the end, so it never leaks backwards), without autograd,
        # since targets take no gradient and RLlib calls this with autograd on.
        if embeddings is None:
            with torch.no_grad():
                embeddings, _ = self._unroll(batch)
                return self._values(embeddings).squeeze(-1)
        return self._values(embeddings).squeeze(-1)

    def _core_input(self, obs: Any, encoder: nn.Module) -> torch.Tensor:
        """(B, T, core input): the observation's encoding, then (``prev_action_reward``) the
        one-hot last action and the last reward, as tvt/rma.py:456 concatenates them."""
        x = encoder(obs[ORIG_OBS_KEY] if self._has_prev_inputs else obs)
        if self.prev_action_reward:
            prev_actions, prev_rewards = self._prev_action_reward(obs, x.shape[:-1])
            x = torch.cat([x, prev_actions.to(x.dtype), prev_rewards.to(x.dtype)], dim=-1)
        return x

    def _unroll(self, batch: Dict[str, Any], return_core_input: bool = False):
        """Runs encoder and core over (B, T); returns (B, T, F) features and STATE_OUT (and,
        with `return_core_input`, the core's (B, T, input) input)."""
        x = self._core_input(batch[Columns.OBS], self._encoder)
        state_in = batch[Columns.STATE_IN]
        y, state = self._rnn(x, self._core_state(state_in))
        state_out = {k: s.transpose(0, 1) for k, s in zip(self._state_keys, self._rnn_state_tuple(state))}
        features = self._head_net(self._head_input(y, x))
        if return_core_input:
            return features, state_out, x
        return features, state_out

    def _head_input(self, core_output: torch.Tensor, core_input: torch.Tensor) -> torch.Tensor:
        """What the heads read: the core's output, and its input with ``core_skip``."""
        return torch.cat([core_output, core_input], dim=-1) if self.core_skip else core_output

    def _core_state(self, state_in: Dict[str, torch.Tensor]):
        """RLlib's (B, L, H) state as the core takes it, (L, B, H): ``(h, c)`` or ``h``, as torch's RNNs."""
        state = tuple(state_in[k].transpose(0, 1).contiguous() for k in self._state_keys)
        return state if len(state) == 2 else state[0]

    @staticmethod
    def _rnn_state_tuple(state) -> Tuple[torch.Tensor, ...]:
        return (state,) if isinstance(state, torch.Tensor) else tuple(state)


class RecurrentCellAPPOModule(RecurrentCellModule, TargetNetworkAPI, InferenceOnlyAPI):
    """`RecurrentCellModule` plus the target networks and inference-only split of APPO."""

    @override(TargetNetworkAPI)
    def make_target_networks(self):
        self._old_encoder = make_target_network(self._encoder)
        self._old_rnn = make_target_network(self._rnn)
        self._old_head_net = make_target_network(self._head_net)
        self._old_pi_head = make_target_network(self._pi_head)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> List[Tuple[NetworkType, NetworkType]]:
        return [
            (self._encoder, self._old_encoder),
            (self._rnn, self._old_rnn),
            (self._head_net, self._old_head_net),
            (self._pi_head, self._old_pi_head),
        ]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        x = self._core_input(batch[Columns.OBS], self._old_encoder)
        y, _ = self._old_rnn(x, self._core_state(batch[Columns.STATE_IN]))
        logits = self._old_pi_head(self._old_head_net(self._head_input(y, x)))
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: logits}

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> List[str]:
        return ["_old_encoder", "_old_rnn", "_old_head_net", "_old_pi_head", "_values", "_decoders"]
