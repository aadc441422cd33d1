"""Which kernels run a call: the one place that decides.

The C kernels (:class:`~memory_agents.cells._native.NativeKernels`) run a call only when
:func:`native_refusal` finds nothing against every tensor of it: on the CPU, float32, not empty,
and the library built or cached. Everything else runs the PyTorch-ops loops
(:class:`~memory_agents.cells.kernels.TorchPointwise`): float64, bfloat16 and float16 where torch
has the ops, and every other device (on a GPU: correct, not fast). Both are held to the
step-by-step cells by the parity tests.

Mismatched operands (an input in another dtype or on another device than the weights or the
state) never get here: :class:`~memory_agents.cells.rnn.GatedRNN` raises ``torch.nn.LSTM``'s
errors for them first. Strides are no reason to refuse: the C wrappers copy whatever C cannot
read in place (``_native._ptr`` checks each pointer).

A new backend (a GPU kernel) is one more branch in :func:`select_kernels`.
"""

from __future__ import annotations

import warnings

import torch

from . import _native
from .kernels import TorchPointwise


class NativeFallbackWarning(RuntimeWarning):
    """A call ran the PyTorch-ops loops where the C kernels could not run (issued once per reason)."""


EMPTY = "an empty batch (nothing for the C kernels to do)"
_QUIET = {EMPTY, _native.DISABLED}  # nothing slow, or asked for: no warning
_announced: set[str] = set()


def native_refusal(*tensors: torch.Tensor | None) -> str | None:
    """Why the C kernels may not run on ``tensors`` (None entries are absent operands), or None
    when they may. The only gate to C: no other code decides it."""
    for t in tensors:
        if t is None or (t.is_cpu and t.dtype == torch.float32 and t.numel()):
            continue  # the common case first: this runs on every call, an env step included
        if not t.is_cpu:
            return (f"tensors on {t.device.type}: the C kernels are CPU-only, so the cells run their "
                    "PyTorch-ops loop there (correct, not fast)")
        if t.dtype != torch.float32:
            return (f"{t.dtype}: the C kernels are float32-only, so the cells run their PyTorch-ops loop "
                    "(2-5x slower); model.float() and float32 inputs run in C")
        if t.numel() == 0:
            return EMPTY
    if not _native.available():
        if _native.backend_reason() == _native.DISABLED:
            return _native.DISABLED
        return (f"{_native.backend_reason()}. The cells run 2-5x slower. Fix: install a C compiler "
                "(gcc or clang) or point CC at a working one; MEMORY_AGENTS_NATIVE=0 chooses PyTorch ops "
                "silently")
    return None


def select_kernels(*tensors: torch.Tensor | None):
    """The kernels for a call on ``tensors``; the first fallback for each reason says so, once."""
    reason = native_refusal(*tensors)
    if reason is None:
        return _native.NativeKernels
    if reason not in _QUIET and reason not in _announced:
        _announced.add(reason)
        # stacklevel 6: the caller of module(x), past forward and torch's Module.__call__
        warnings.warn(f"memory_agents.cells: {reason}", NativeFallbackWarning, stacklevel=6)
    return TorchPointwise
