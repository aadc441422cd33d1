"""Refined gated recurrent cells (Gu et al., ICML 2020) as fast PyTorch sequence layers.

Layer: pure PyTorch, no RLlib. Public API::

    from memory_agents.cells import build_rnn, available_cells, from_torch
    rnn = build_rnn("ur-lstm", input_size=1, hidden_size=256, batch_first=True)
    y, state = rnn(x, state, resets=done)
    trace = rnn.gate_trace(x)
"""

from .cells import GatedGRUCell, GatedLSTMCell
from .config import PRESETS, CellConfig, available_cells, resolve_config
from .dispatch import NativeFallbackWarning
from .rnn import GatedRNN, build_rnn, from_torch

__all__ = [
    "build_rnn", "available_cells", "from_torch", "GatedRNN", "GatedLSTMCell", "GatedGRUCell",
    "CellConfig", "PRESETS", "resolve_config", "NativeFallbackWarning",
]
