"""The PPO learners of `RecurrentCellModule`: the same update as RLlib's, with less overhead per
minibatch (`MemoryPPOLearner`), and the auxiliary reconstruction loss of DeepMind's TVT release
(`ReconstructionPPOLearner`, ``reconstruction_weight``).

`MemoryPPOLearner` is what `memory_agent_config` trains PPO with (through
`memory_agents.rllib.config.apply_model_options`). Its updates equal `PPOTorchLearner`'s bit for
bit (tests/test_rllib_learner.py); it only does the same work in fewer calls, which matters at
these small shapes (64 minibatch updates per 3,840-step batch, ~40 ms each here):

- RLlib checks every gradient for NaN/inf with one ``torch.isfinite(grad).all()`` per
  parameter, twice per update (before and after zeroing bad entries): 26 small ops and 26
  syncs, ~2.2 ms per update, ~6% of the learner's time. Here one fused ``_foreach_norm``
  decides: a tensor's norm is finite only if all its entries are, so when every norm is finite
  the gradients are applied as they are, which is what RLlib does with finite gradients;
  otherwise RLlib's own method handles them (zeroing NaN, warning), unchanged.
- Adam runs its multi-tensor (``foreach``) implementation, which PyTorch picks by default on
  GPUs only: the same arithmetic (measured equal to the bit over 200 steps), ~0.3 ms less per
  update.

`ReconstructionPPOLearner` is RLlib's `PPOTorchLearner` whose `compute_loss_for_module` adds,
to PPO's loss, the weighted reconstruction of the observation, the last action and the last
reward from the module's decoders (`RecurrentCellModule`, ``model_config
["reconstruction_weight"]``), and logs each term with the release's names
(tvt/losses.py:80-84): ``recon_loss_image``, ``recon_loss_action``, ``recon_loss_reward`` and
``total_reconstruction_loss``, under ``result["learners"]["default_policy"]``.

`memory_agent_config(..., reconstruction_weight=1.0)` sets this learner class (through
`memory_agents.rllib.config.apply_model_options`); by hand::

    config.training(learner_class=ReconstructionPPOLearner)

The terms (line numbers at google-deepmind/deepmind-research commit
152ac280f2011f9172444871c7c4b02590eb8984, where we differ: the module's docstring):

- image: ``50 * w_image *`` the per-pixel mean squared error of the [0, 1]-scaled observation
  (the release: 50 / pixels times the pixel-summed Bernoulli NLL, tvt/rma.py:527 and
  tvt/losses.py:50-56);
- action: ``w_action *`` the softmax cross-entropy of the previous action (losses.py:60-64,
  rma.py:528), over steps that have one (not an episode's first);
- reward: ``w_reward * 0.5 * (r_hat - r)**2`` of the previous reward (losses.py:68-74,
  rma.py:529).

Each is a mean over the batch's valid steps (RLlib's loss mask: no zero-padding, no PPO
bootstrap step), as PPO's own terms are.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.utils.annotations import override
from ray.rllib.utils.typing import ModuleID, TensorType

from memory_agents.rllib.module import RECONSTRUCTION_OUTPUTS, RELEASE_RECONSTRUCTION_WEIGHTS

#: Metric names, as the release logs them (tvt/losses.py:80-84).
METRIC_NAMES = {"image": "recon_loss_image", "action": "recon_loss_action", "reward": "recon_loss_reward"}
TOTAL_METRIC = "total_reconstruction_loss"


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Zero when no step counts (e.g. a batch of first steps only for the action term).
    return (values * mask).sum() / mask.sum().clamp_min(1)


def reconstruction_losses(
    module, batch: Dict[str, Any], fwd_out: Dict[str, Any], mask: Optional[torch.Tensor] = None
) -> Dict[str, torch.Tensor]:
    """The weighted reconstruction terms of `module` (a `RecurrentCellModule` with decoders)
    on `batch`, from its `forward_train` output `fwd_out`, keyed by `METRIC_NAMES`, plus their
    sum under `TOTAL_METRIC`. `mask` (B, T), bool: the steps that count (all if None)."""
    weights = module.reconstruction_weights
    targets = module.reconstruction_targets(batch)
    if mask is None:
        mask = torch.ones(targets["image"].shape[:-1], dtype=torch.bool, device=targets["image"].device)
    mask = mask.to(targets["image"].dtype)
    terms: Dict[str, torch.Tensor] = {}
    if weights["image"] > 0:
        squared = (fwd_out[RECONSTRUCTION_OUTPUTS["image"]] - targets["image"]).pow(2).mean(-1)
        terms["image"] = _masked_mean(squared, mask)
    if weights["action"] > 0:
        logits = fwd_out[RECONSTRUCTION_OUTPUTS["action"]]
        one_hot = targets["action"]
        cross_entropy = -(one_hot * torch.log_softmax(logits, dim=-1)).sum(-1)
        # An episode's first step has no previous action (an all-zero target): left out.
        terms["action"] = _masked_mean(cross_entropy, mask * one_hot.sum(-1))
    if weights["reward"] > 0:
        squared = 0.5 * (fwd_out[RECONSTRUCTION_OUTPUTS["reward"]] - targets["reward"]).pow(2)
        terms["reward"] = _masked_mean(squared, mask)
    weighted = {
        METRIC_NAMES[term]: weights[term] * RELEASE_RECONSTRUCTION_WEIGHTS[term] * value
        for term, value in terms.items()
    }
    weighted[TOTAL_METRIC] = sum(weighted.values()) if weighted else torch.zeros(())
    return weighted


class MemoryPPOLearner(PPOTorchLearner):
    """`PPOTorchLearner` with a fused finite-gradient check and multi-tensor Adam (module
    docstring): the same updates, in fewer calls."""

    @override(PPOTorchLearner)
    def configure_optimizers_for_module(self, module_id: ModuleID, config: Any = None) -> None:
        # RLlib's own, with foreach=True: torch.optim.Adam(params) plus the lr schedule.
        params = self.get_parameters(self._module[module_id])
        self.register_optimizer(module_id=module_id, optimizer=torch.optim.Adam(params, foreach=True),
                                params=params, lr_or_lr_schedule=config.lr)

    @override(PPOTorchLearner)
    def apply_gradients(self, gradients_dict: Dict[Any, Any]) -> None:
        grads = [g for g in gradients_dict.values() if g is not None]
        # Anything unusual (schedulers, grad scalers, a non-finite gradient): RLlib's method.
        if (self._lr_scheduler_classes is not None or self._grad_scalers is not None or not grads
                or not bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())):
            return super().apply_gradients(gradients_dict)
        for pid, grad in gradients_dict.items():
            self._params[pid].grad = grad
        for module_id, optimizer_names in self._module_optimizers.items():
            for name in optimizer_names:
                self.get_optimizer(module_id, name).step()


class ReconstructionPPOLearner(MemoryPPOLearner):
    """`MemoryPPOLearner` whose loss adds the module's weighted reconstruction terms."""

    @override(PPOTorchLearner)
    def compute_loss_for_module(
        self,
        *,
        module_id: ModuleID,
        config: Any,
        batch: Dict[str, Any],
        fwd_out: Dict[str, TensorType],
    ) -> TensorType:
        total_loss = super().compute_loss_for_module(
            module_id=module_id, config=config, batch=batch, fwd_out=fwd_out
        )
        module = self.module[module_id].unwrapped()
        if not any(key in fwd_out for key in RECONSTRUCTION_OUTPUTS.values()):
            return total_loss  # a module without decoders (reconstruction_weight 0)
        terms = reconstruction_losses(module, batch, fwd_out, batch.get(Columns.LOSS_MASK))
        self.metrics.log_dict(terms, key=module_id, window=1)  # per update, as PPO's own terms
        return total_loss + terms[TOTAL_METRIC]
