"""Slow learning check (excluded from the default run; `pytest -m slow`): the UR-LSTM learns the
adding task (Arjovsky et al. 2016) at T = 100 to below a tenth of the baseline MSE (0.167)."""

from __future__ import annotations

import time

import pytest
import torch

from memory_agents.cells import build_rnn


def adding_batch(batch: int, steps: int, generator: torch.Generator):
    values = torch.rand(batch, steps, generator=generator)
    markers = torch.zeros(batch, steps)
    half = steps // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, steps, (batch,), generator=generator)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = (values * markers).sum(1, keepdim=True)
    return torch.stack([values, markers], -1), target


@pytest.mark.slow
def test_ur_lstm_learns_adding_t100():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    rnn = build_rnn("ur-lstm", 2, 128, batch_first=True)
    head = torch.nn.Linear(128, 1)
    params = list(rnn.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=2e-3)
    x_eval, y_eval = adding_batch(1000, 100, torch.Generator().manual_seed(123))
    baseline = 0.167
    start, best = time.time(), float("inf")
    for step in range(1, 3001):
        x, y = adding_batch(64, 100, gen)
        out, _ = rnn(x)
        loss = torch.nn.functional.mse_loss(head(out[:, -1]), y)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 100 == 0:
            with torch.no_grad():
                best = min(best, torch.nn.functional.mse_loss(head(rnn(x_eval)[0][:, -1]), y_eval).item())
            print(f"step {step}: eval MSE {best:.4f} ({time.time() - start:.0f} s)", flush=True)
            if best < baseline / 10:
                break
    assert best < baseline / 10, f"eval MSE {best:.4f} not below {baseline / 10:.4f}"
