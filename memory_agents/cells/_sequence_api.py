"""The entry points that every whole-sequence backend shares (C and Triton).

A backend defines ``_lstm`` / ``_gru`` (one forward loop each; ``save`` keeps what the backward
needs) and the two backward loops; these wrappers are the names the loops of
:mod:`memory_agents.cells.kernels` call, the same for every backend.
"""

from __future__ import annotations


class SequenceKernels:
    """``lstm_sequence`` / ``lstm_inference`` / ``gru_sequence`` / ``gru_inference`` over a
    subclass's ``_lstm`` and ``_gru``."""

    @classmethod
    def lstm_sequence(cls, spec, x, weight_ih, bias, h0, c0, weight_hh, keep):
        """Forward keeping every step for the backward (and gate traces): (ys, cs, acts)."""
        return cls._lstm(spec, x, weight_ih, bias, h0, c0, weight_hh, keep, save=True)

    @classmethod
    def lstm_inference(cls, spec, x, weight_ih, bias, h0, c0, weight_hh, keep):
        """Forward keeping nothing: (ys, c_T). Without ``save`` the loop keeps two cell states
        and alternates between them; step T-1 wrote slot (T-1) % 2."""
        ys, cs, _ = cls._lstm(spec, x, weight_ih, bias, h0, c0, weight_hh, keep, save=False)
        return ys, cs[(x.shape[0] - 1) % 2]

    @classmethod
    def gru_sequence(cls, spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep):
        """Forward keeping every step for the backward (and gate traces): (ys, acts, a_ns)."""
        return cls._gru(spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep, save=True)

    @classmethod
    def gru_inference(cls, spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep):
        """Forward keeping nothing: ys."""
        return cls._gru(spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep, save=False)[0]
