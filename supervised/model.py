"""One model for every task: optional word embedding, a recurrent stack from ``build_rnn``, a linear head."""

from __future__ import annotations

import torch
from torch import nn


def build_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int) -> nn.Module:
    # Imported here so that readers, generators and the CLI's --help work without the cells package.
    from memory_agents.cells import build_rnn as build

    return build(cell, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, batch_first=True)


def available_cells() -> list[str]:
    try:
        from memory_agents.cells import available_cells as names
    except ImportError:
        return []
    return list(names())


class SequenceModel(nn.Module):
    """``x (B, T, input_size)`` or token ids ``(B, T)`` -> outputs ``(B, T, output_size)`` (or ``(B, output_size)``
    with ``last_only``) and the recurrent state to carry."""

    def __init__(self, cell: str, input_size: int, output_size: int, hidden_size: int, num_layers: int = 1,
                 vocabulary_size: int | None = None):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary_size, input_size) if vocabulary_size else None
        self.rnn = build_rnn(cell, input_size, hidden_size, num_layers)
        self.head = nn.Linear(hidden_size, output_size)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x) if self.embedding is not None else x

    def forward(self, x: torch.Tensor, state=None, last_only: bool = False):  # state: h or (h, c), as torch RNNs
        hidden, state = self.rnn(self._inputs(x), state) if state is not None else self.rnn(self._inputs(x))
        if last_only:
            hidden = hidden[:, -1]
        return self.head(hidden), state

    @torch.no_grad()
    def gate_trace(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rnn's gate activations on ``x`` ("f", "g", maybe "r"); empty if the rnn has none to show."""
        trace = getattr(self.rnn, "gate_trace", None)
        return dict(trace(self._inputs(x))) if trace is not None else {}
