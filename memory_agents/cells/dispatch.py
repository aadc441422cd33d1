"""Which kernels run a call: the one place that decides.

- **CPU**: the C kernels (:class:`~memory_agents.cells._native.NativeKernels`) run a call only
  when :func:`native_refusal` finds nothing against every tensor of it: float32, not empty, and
  the library built or cached.
- **CUDA**: the ``lstm`` and ``gru`` equations (:func:`torch_equations`: the presets ``lstm``,
  ``gru``, ``c-gru``, ``u-gru``, which differ from ``gru`` only in their initialisation) without
  ``resets`` run torch's fused ``_VF.lstm`` / ``_VF.gru`` (cuDNN), decided by :func:`uses_cudnn`.
  Every other call runs the Triton kernels
  (:class:`~memory_agents.cells.triton_kernels.TritonKernels`) when :func:`triton_refusal`
  finds nothing against it: ``triton`` importable (``pip install 'memory-agents[gpu]'``), a
  floating dtype, not empty.
- **Everything else** runs the PyTorch-ops loops
  (:class:`~memory_agents.cells.kernels.TorchPointwise`): float64, bfloat16 and float16 on the
  CPU, other devices, CUDA without triton. All backends are held to the step-by-step cells by
  the parity tests.

Where a call is, is asked of one function, :func:`is_cuda` (the tests substitute it to drive the
CUDA branches on CPU tensors, with the Triton kernels in Triton's interpreter). Mismatched
operands (an input in another dtype or on another device than the weights or the state) never get
here: :class:`~memory_agents.cells.rnn.GatedRNN` raises ``torch.nn.LSTM``'s errors for them first.
Strides are no reason to refuse: the C wrappers copy whatever C cannot read in place
(``_native._ptr`` checks each pointer), the Triton loops likewise.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import torch

from . import _native
from .config import CellConfig
from .kernels import TorchPointwise


class NativeFallbackWarning(RuntimeWarning):
    """A call ran the PyTorch-ops loops where the C or Triton kernels could not run (issued once
    per reason)."""


EMPTY = "an empty batch (nothing for the C kernels to do)"
TRITON_DISABLED = "disabled by MEMORY_AGENTS_TRITON=0"
_QUIET = {EMPTY, _native.DISABLED, TRITON_DISABLED}  # nothing slow, or asked for: no warning
_announced: set[str] = set()
_TRITON_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_triton: dict = {}  # the imported kernels module, or why not: filled on the first CUDA call


def is_cuda(t: torch.Tensor) -> bool:
    """Whether ``t`` is on a CUDA device: the one device test of the GPU branches."""
    return t.is_cuda


def native_refusal(*tensors: torch.Tensor | None) -> str | None:
    """Why the C kernels may not run on ``tensors`` (None entries are absent operands), or None
    when they may. The only gate to C: no other code decides it."""
    if tensors and tensors[0] is not None and is_cuda(tensors[0]):
        return "tensors on cuda: the C kernels are CPU-only (on a GPU the Triton kernels or cuDNN run)"
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


def _triton_kernels():
    """The Triton kernels class, or the reason it cannot be had (imported once, on first use:
    importing triton takes a second, and CPU-only users never pay it)."""
    if "kernels" not in _triton:
        if os.environ.get("MEMORY_AGENTS_TRITON", "1") == "0":
            _triton["kernels"], _triton["reason"] = None, TRITON_DISABLED
        elif importlib.util.find_spec("triton") is None:
            _triton["kernels"] = None
            _triton["reason"] = ("triton is not installed, so the cells run their PyTorch-ops loop on the GPU "
                                 "(correct, not fast). Fix: pip install 'memory-agents[gpu]'; "
                                 "MEMORY_AGENTS_TRITON=0 chooses PyTorch ops silently")
        else:
            try:
                from .triton_kernels import TritonKernels
                _triton["kernels"], _triton["reason"] = TritonKernels, None
            except Exception as error:  # a broken install: fall back, and say why
                _triton["kernels"] = None
                _triton["reason"] = (f"triton failed to import ({type(error).__name__}: {error}), so the cells "
                                     "run their PyTorch-ops loop on the GPU (correct, not fast)")
    return _triton["kernels"], _triton["reason"]


def triton_refusal(*tensors: torch.Tensor | None) -> str | None:
    """Why the Triton kernels may not run on ``tensors`` (on a CUDA device), or None when they
    may. The only gate to Triton."""
    for t in tensors:
        if t is None:
            continue
        if t.dtype not in _TRITON_DTYPES:
            return f"{t.dtype}: the Triton kernels take float32, float64, float16 and bfloat16"
        if t.numel() == 0:
            return EMPTY
    return _triton_kernels()[1]


def torch_equations(config: CellConfig) -> bool:
    """Whether ``config``'s cell computes exactly ``torch.nn.LSTM``'s or ``torch.nn.GRU``'s step
    (any initialisation): its weights then map one to one onto torch's fused RNN."""
    if config.main_gate_activation != "sigmoid" or config.auxiliary_gate != "none":
        return False
    return config.family == "gru" or config.input_gate == "separate"


def uses_cudnn(config: CellConfig, keep: torch.Tensor | None, x: torch.Tensor) -> bool:
    """Whether a whole call runs torch's fused ``_VF.lstm`` / ``_VF.gru`` (cuDNN): the torch
    equations on CUDA, without resets (torch's RNNs cannot reset inside a sequence)."""
    return keep is None and is_cuda(x) and torch_equations(config)


def choose(*tensors: torch.Tensor | None) -> tuple[str, str | None]:
    """``(backend, reason)`` for a layer's call on ``tensors``: ``"native"``, ``"triton"`` or
    ``"torch"``, with why the PyTorch-ops loops run (None otherwise)."""
    if tensors and tensors[0] is not None and is_cuda(tensors[0]):
        reason = triton_refusal(*tensors)
        return ("triton", None) if reason is None else ("torch", reason)
    reason = native_refusal(*tensors)
    return ("native", None) if reason is None else ("torch", reason)


def select_kernels(*tensors: torch.Tensor | None):
    """The kernels for a call on ``tensors``; the first fallback for each reason says so, once."""
    backend, reason = choose(*tensors)
    if backend == "native":
        return _native.NativeKernels
    if backend == "triton":
        return _triton["kernels"]
    if reason not in _QUIET and reason not in _announced:
        _announced.add(reason)
        # stacklevel 6: the caller of module(x), past forward and torch's Module.__call__
        warnings.warn(f"memory_agents.cells: {reason}", NativeFallbackWarning, stacklevel=6)
    return TorchPointwise
