"""The memory probe: can a linear read-out recover the phase-1 colour from the agent's
recurrent state at the end of the delay?

`rllib evaluate --probe` records, in every episode, the recurrent state (all layers, h and,
for LSTMs, c) after the last observation of the distractor phase, with the colour the agent
saw in phase 1. A multinomial logistic regression is fitted on the first half of the episodes
and scored on the second. High accuracy with low task success means the memory kept the colour
and the policy did not use it; chance accuracy means the memory lost it (or never stored it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


@dataclass
class ProbeResult:
    accuracy: float
    chance: float
    train_episodes: int
    test_episodes: int

    def summary(self) -> str:
        return (f"memory probe: the phase-1 colour is decoded linearly from the recurrent state at "
                f"the end of the delay with accuracy {self.accuracy:.3f} on {self.test_episodes} "
                f"held-out episodes (chance {self.chance:.3f}, fitted on {self.train_episodes})")


def fit_linear_probe(states: np.ndarray, labels: Sequence, l2: float = 1e-3,
                     steps: int = 200) -> ProbeResult:
    """Fits a softmax classifier on the first half of (states, labels); scores the second.

    Features are standardised with the training half's mean and spread. `chance` is the
    test accuracy of always answering the training half's most common label.
    """
    _, codes = np.unique(np.asarray(labels), return_inverse=True)  # any labels -> 0..k-1
    x = torch.as_tensor(np.asarray(states, dtype=np.float64).reshape(len(codes), -1))
    y = torch.as_tensor(codes.astype(np.int64))
    n = len(y)
    if n < 4:
        raise ValueError(f"the memory probe needs at least 4 episodes, got {n}")
    half = n // 2
    mean, std = x[:half].mean(0), x[:half].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    classes = int(y.max()) + 1
    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(x[:half] @ weight + bias, y[:half]) + l2 * weight.pow(2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        predicted = (x[half:] @ weight + bias).argmax(1)
    majority = int(torch.bincount(y[:half], minlength=classes).argmax())
    return ProbeResult(
        accuracy=float((predicted == y[half:]).double().mean()),
        chance=float((y[half:] == majority).double().mean()),
        train_episodes=half, test_episodes=n - half,
    )
