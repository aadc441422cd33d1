"""Fused C pointwise kernels (float32, CPU), compiled on first use and cached.

Why not a PyTorch C++ extension: building against the torch headers takes a minute or more on a
2-core machine (in every fresh environment), while this plain-C file (no torch headers) compiles
in about a second with the system C compiler and is reached through ``ctypes`` on tensor data
pointers. The time loop and the GEMMs stay in PyTorch (oneDNN/MKL); only the ~15 (forward) and
~35 (backward) per-step pointwise ops are fused into one call each.

Selection is automatic and reported by :func:`backend_name` / :func:`backend_reason`:
the native kernels are used for contiguous float32 CPU tensors when the shared library could be
built (or was cached); otherwise, or with ``MEMORY_AGENTS_NATIVE=0``, the pure-PyTorch
:class:`~memory_agents.cells.kernels.TorchPointwise` runs, with identical results to ~1e-6.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("pointwise.c")


def _isa_flags() -> list[str]:
    # AVX2+FMA only when this CPU has them (the cache key includes them, so a shared home
    # directory across different machines never loads a library the CPU cannot run).
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch
        capability = "DEFAULT"
    return ["-mavx2", "-mfma"] if capability in ("AVX2", "AVX512") else []


_FLAGS = ["-O3", "-ffast-math", "-fno-finite-math-only", *_isa_flags(), "-shared", "-fPIC"]
_lock = threading.Lock()
_state: dict = {"loaded": False, "lib": None, "reason": "not loaded yet"}

_AUX = {"none": 0, "refine": 1, "master": 2}


def _cache_dir() -> Path:
    root = os.environ.get("MEMORY_AGENTS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "memory_agents"
    )
    return Path(root)


def _compile(source: Path, target: Path) -> None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        raise RuntimeError("no C compiler (cc/gcc/clang) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a private name, then rename: concurrent processes (Ray workers) never see half a file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *_FLAGS, "-o", tmp, str(source), "-lm"], check=True,
                       capture_output=True, timeout=120)
        os.replace(tmp, target)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"{compiler} failed: {error.stderr.decode(errors='replace')[-500:]}") from error
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load():
    if _state["loaded"]:  # the common case, without taking the lock
        return _state["lib"]
    with _lock:
        if _state["loaded"]:
            return _state["lib"]
        _state["loaded"] = True
        if os.environ.get("MEMORY_AGENTS_NATIVE", "1") == "0":
            _state["reason"] = "disabled by MEMORY_AGENTS_NATIVE=0"
            return None
        try:
            digest = hashlib.sha256(_SOURCE.read_bytes() + " ".join(_FLAGS).encode() + sys.platform.encode()).hexdigest()[:16]
            target = _cache_dir() / f"pointwise-{digest}.so"
            if not target.exists():
                _compile(_SOURCE, target)
            lib = ctypes.CDLL(str(target))
        except Exception as error:  # any failure: fall back to PyTorch ops, and say why
            _state["reason"] = f"native kernels unavailable ({error}); using PyTorch ops"
            return None
        ptr, long_, int_ = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
        lib.lstm_forward.argtypes = [ptr] * 5 + [long_] * 3 + [int_] * 3
        lib.lstm_backward.argtypes = [ptr] * 7 + [long_] * 3 + [int_] * 3
        lib.gru_forward.argtypes = [ptr] * 5 + [long_] * 3 + [int_] * 2
        lib.gru_backward.argtypes = [ptr] * 7 + [long_] * 3 + [int_] * 2
        for fn in (lib.lstm_forward, lib.lstm_backward, lib.gru_forward, lib.gru_backward):
            fn.restype = None
        _state["lib"] = lib
        _state["reason"] = f"fused C kernels from {target}"
        return lib


def _c(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


class NativePointwise:
    """Same interface as :class:`~memory_agents.cells.kernels.TorchPointwise`."""

    name = "native"

    @staticmethod
    def lstm_forward(spec, z, act, c_prev, c_out, h_out) -> None:
        lib = _state["lib"]
        z, c_prev = _c(z), _c(c_prev)
        lib.lstm_forward(z.data_ptr(), act.data_ptr(), c_prev.data_ptr(), c_out.data_ptr(), h_out.data_ptr(),
                         z.shape[0], spec.hidden_size, spec.num_gates, int(spec.cumax_main),
                         _AUX[spec.auxiliary_gate], int(spec.coupled))

    @staticmethod
    def lstm_backward(spec, act, c, c_prev, dh, dc, dz) -> torch.Tensor:
        lib = _state["lib"]
        c_prev, dh, dc = _c(c_prev), _c(dh), _c(dc)
        dc_prev = torch.empty_like(dc)
        lib.lstm_backward(act.data_ptr(), c.data_ptr(), c_prev.data_ptr(), dh.data_ptr(), dc.data_ptr(),
                          dz.data_ptr(), dc_prev.data_ptr(), dh.shape[0], spec.hidden_size, spec.num_gates,
                          int(spec.cumax_main), _AUX[spec.auxiliary_gate], int(spec.coupled))
        return dc_prev

    @staticmethod
    def gru_forward(spec, xw, a, h_prev, act, h_out) -> None:
        lib = _state["lib"]
        xw, a, h_prev = _c(xw), _c(a), _c(h_prev)
        lib.gru_forward(xw.data_ptr(), a.data_ptr(), h_prev.data_ptr(), act.data_ptr(), h_out.data_ptr(),
                        xw.shape[0], spec.hidden_size, spec.num_gates, int(spec.cumax_main),
                        _AUX[spec.auxiliary_gate])

    @staticmethod
    def gru_backward(spec, act, a_n, h_prev, dh, da, dxw_n) -> torch.Tensor:
        lib = _state["lib"]
        h_prev, dh = _c(h_prev), _c(dh)
        direct = torch.empty_like(dh)
        lib.gru_backward(act.data_ptr(), a_n.data_ptr(), h_prev.data_ptr(), dh.data_ptr(), da.data_ptr(),
                         dxw_n.data_ptr(), direct.data_ptr(), dh.shape[0], spec.hidden_size, spec.num_gates,
                         int(spec.cumax_main), _AUX[spec.auxiliary_gate])
        return direct


def pointwise_for(tensor: torch.Tensor):
    """The native pointwise implementation for ``tensor``'s dtype/device, or None."""
    if tensor.dtype != torch.float32 or tensor.device.type != "cpu":
        return None
    return NativePointwise if _load() is not None else None


def backend_name() -> str:
    """``"native"`` when the fused C kernels run float32 CPU work, else ``"torch"``."""
    return "native" if _load() is not None else "torch"


def backend_reason() -> str:
    _load()
    return _state["reason"]
