"""The C kernels (float32, CPU): whole-sequence recurrences and one-step updates, compiled on
first use and cached.

What runs in C (``sequence.c``, which includes the fused gate updates of ``pointwise.c``):

- the full time loop of a layer, forward and BPTT: per step the input projection, ``h W_hh^T``
  with a small register-blocked GEMM on weights packed once per call, and the fused update.
  Measured here (AMD EPYC, AVX-512, H 256): ~110 GFLOP/s on the skinny recurrent product where
  MKL's ``addmm`` reaches 55-92, and no Python between steps;
- one inference step (T = 1) on the weights as they are (packing would cost more than the step);
- batch rows split across ``torch.get_num_threads()`` threads: rows are independent through the
  whole recurrence, so the threads never wait on each other inside a call.

Why not a PyTorch C++ extension: building against the torch headers takes a minute or more on a
2-core machine (in every fresh environment), while this plain C (no torch headers) compiles in
about two seconds with the system C compiler and is reached through ``ctypes`` on tensor data
pointers. The large once-per-call GEMMs of the backward (dW_hh, dW_ih, dx) stay in PyTorch.

Which calls run here is decided in one place, :func:`memory_agents.cells.dispatch.native_refusal`
(float32 CPU operands, and this library built or cached); :func:`backend_reason` says where the
library came from or why it is unavailable. Every pointer handed to C passes :func:`_ptr`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

from ._sequence_api import SequenceKernels

_SOURCE = Path(__file__).with_name("sequence.c")  # includes pointwise.c
_SOURCES = (_SOURCE, Path(__file__).with_name("pointwise.c"))


def _isa_flags() -> list[str]:
    # Vector ISA flags only when this CPU has them (the cache key includes them, so a shared home
    # directory across different machines never loads a library the CPU cannot run). AVX-512
    # doubles the GEMM tile's registers: ~110 vs ~60 GFLOP/s on the recurrent product.
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch
        capability = "DEFAULT"
    flags = ["-mavx2", "-mfma"] if capability in ("AVX2", "AVX512") else []
    if capability == "AVX512":
        flags += ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]
    return flags


# Not -ffast-math: it links GCC's crtfastmath, whose constructor sets flush-to-zero and
# denormals-are-zero in the MXCSR of the whole process when the library loads, and it implies
# -ffinite-math-only (NaN/inf checks may be compiled away). These are the parts of it that the
# kernels need (no errno, contraction into FMAs, reassociation for the vectorised reductions);
# none touches the floating-point environment or NaN/inf semantics. Measured here: the same speed
# as -ffast-math within noise; without the last three, forward passes were ~5% slower.
_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast", "-fno-signed-zeros",
          "-fassociative-math", "-freciprocal-math", *_isa_flags(), "-shared", "-fPIC", "-pthread"]
_lock = threading.Lock()
_state: dict = {"loaded": False, "lib": None, "reason": "not loaded yet"}
DISABLED = "disabled by MEMORY_AGENTS_NATIVE=0"

_AUX = {"none": 0, "refine": 1, "master": 2}


def _cache_dir() -> Path:
    root = os.environ.get("MEMORY_AGENTS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "memory_agents"
    )
    return Path(root)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder)
        os.close(fd)
        os.unlink(probe)
        return True
    except OSError:
        return False


def _private_temp_dir() -> Path:
    """A per-user folder under the system temp dir, so processes of one user share the build. Used
    only if it is ours and closed to others (another user's folder there could hold any .so)."""
    folder = Path(tempfile.gettempdir()) / f"memory_agents-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="memory_agents-"))


def _build_dir() -> tuple[Path, str]:
    """(folder for the library, a note for the reason when it is not the configured cache)."""
    folder = _cache_dir()
    if _writable(folder):
        return folder, ""
    fallback = _private_temp_dir()
    return fallback, f"; cache folder {folder} is not writable, built in {fallback} (set MEMORY_AGENTS_CACHE)"


def _compiler() -> tuple[list[str], str]:
    """The C compiler's command and identity (the first line of ``--version``)."""
    command = shlex.split(os.environ.get("CC", "")) or [
        found for found in (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"),) if found]
    if not command:
        raise RuntimeError("no C compiler (cc/gcc/clang) on PATH")
    try:
        version = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"C compiler {command[0]!r} does not run: {error}") from None
    lines = version.stdout.strip().splitlines()
    if version.returncode != 0 or not lines:
        raise RuntimeError(f"C compiler {command[0]!r} does not run ({version.stderr.strip()[-200:]})")
    return command, lines[0]


def _compile(compiler: list[str], identity: str, source: Path, target: Path) -> None:
    # Compile to a private name, then rename: concurrent processes (Ray workers) never see half a file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    # OpenMP only with GCC, whose libgomp is the runtime torch already loaded (the threads then come
    # from torch's pool, see sequence.c); clang's libomp would be a second pool. Else pthreads.
    attempts = (["-fopenmp"], []) if "clang" not in identity.lower() else ([],)
    try:
        for extra in attempts:
            result = subprocess.run([*compiler, *_FLAGS, *extra, "-o", tmp, str(source), "-lm"],
                                    capture_output=True, timeout=120)
            if result.returncode == 0:
                break
        else:
            raise RuntimeError(f"{compiler[0]} failed: {result.stderr.decode(errors='replace')[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open(path: Path):
    """Load the library and declare its entry points (a library missing one fails here)."""
    lib = ctypes.CDLL(str(path))
    ptr, long_, int_ = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    lib.panel_width.restype = long_
    lib.uses_openmp.restype = int_
    lib.pack_panels.argtypes = [ptr] + [long_] * 4 + [ptr]
    lib.lstm_sequence.argtypes = ([ptr] + [long_] * 3 + [ptr] * 8 + [int_] + [ptr] * 3 + [long_] * 4
                                  + [int_] * 3 + [long_])
    lib.lstm_sequence_backward.argtypes = [ptr] * 10 + [long_] * 4 + [int_] * 3 + [long_]
    lib.gru_sequence.argtypes = ([ptr] + [long_] * 3 + [ptr] * 9 + [int_] + [ptr] * 3 + [long_] * 4
                                 + [int_] * 2 + [long_])
    lib.gru_sequence_backward.argtypes = [ptr] * 11 + [long_] * 4 + [int_] * 2 + [long_]
    lib.lstm_step.argtypes = [ptr, long_, long_, ptr, ptr, long_, long_] + [ptr] * 6 + [long_] * 3 + [int_] * 3
    lib.gru_step.argtypes = [ptr, long_, long_, ptr, ptr, long_, long_] + [ptr] * 5 + [long_] * 3 + [int_] * 2
    for fn in (lib.pack_panels, lib.lstm_sequence, lib.lstm_sequence_backward, lib.gru_sequence,
               lib.gru_sequence_backward, lib.lstm_step, lib.gru_step):
        fn.restype = None
    return lib


def _library_name(compiler_identity: str) -> str:
    """The cached file's name: a digest of everything that changes the machine code (sources,
    flags, OS, CPU architecture, compiler), so a shared home folder never loads a foreign build."""
    code = b"".join(path.read_bytes() for path in _SOURCES)
    key = [code, " ".join(_FLAGS), sys.platform, platform.machine(), compiler_identity]
    digest = hashlib.sha256(b"\0".join(k if isinstance(k, bytes) else k.encode() for k in key)).hexdigest()[:16]
    return f"cells-{digest}.so"


def _build_and_open() -> tuple[object, str]:
    """(library, where it came from and how it was built)."""
    compiler, identity = _compiler()
    folder, note = _build_dir()
    target = folder / _library_name(identity)
    origin = f"{target}, built by {identity}{note}"
    if not target.exists():
        _compile(compiler, identity, _SOURCE, target)
        return _open(target), origin
    try:
        return _open(target), origin
    except (OSError, AttributeError):  # a damaged or foreign cached file: rebuild it, once
        _compile(compiler, identity, _SOURCE, target)
        return _open(target), f"{origin}; rebuilt after the cached copy failed to load"


def _load():
    if _state["loaded"]:  # the common case, without taking the lock
        return _state["lib"]
    with _lock:
        if _state["loaded"]:
            return _state["lib"]
        if os.environ.get("MEMORY_AGENTS_NATIVE", "1") == "0":
            _state["reason"] = DISABLED
        else:
            try:
                lib, origin = _build_and_open()
                threads = "OpenMP (torch's pool)" if lib.uses_openmp() else "pthreads"
                _state["lib"] = lib
                _state["reason"] = f"C kernels, threads by {threads}, from {origin}"
            except Exception as error:  # any failure: fall back to PyTorch ops, and say why
                _state["reason"] = f"native kernels unavailable ({error}); using PyTorch ops"
        _state["loaded"] = True
        return _state["lib"]


def _c(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


# ------------------------------------------------------------------ one inference step in C
def _tie(cell, H: int) -> tuple[int, int]:
    """Block indices (r, f) of the refine tie b_r - b_f, or (-1, -1) without it."""
    blocks = cell._tie_blocks
    return (blocks[0].start // H, blocks[1].start // H) if blocks is not None else (-1, -1)


class _StepOperands:
    """A layer's parameters as C pointers, holding the tensors (a temporary's pointer would dangle)."""

    def __init__(self, cell, x):
        self.x, self.weight_ih, self.weight_hh = x, _c(cell.weight_ih), _c(cell.weight_hh)
        self.bias = _maybe_c(cell.bias)
        self.bias_hn = _maybe_c(getattr(cell, "bias_hn", None))

    def input_args(self) -> tuple:
        return (_ptr(self.x, rows=True), self.x.stride(0), self.x.shape[1], _ptr(self.weight_ih), _ptr(self.bias))


# ------------------------------------------------------------------ whole-sequence loops in C
def _ptr(t: torch.Tensor | None, rows: bool = False) -> int | None:
    """The address of ``t``'s data for C (None for an absent operand). Every pointer that reaches C
    comes from here. Only float32 CPU tensors in the layout C reads pass: contiguous, or with
    ``rows`` unit stride along the last dimension (C takes the other strides). The dispatch in
    :mod:`~memory_agents.cells.dispatch` sends nothing else, so a failure is a bug: an exception,
    never a read of the wrong bytes."""
    if t is None:
        return None
    if not (t.is_cpu and t.dtype == torch.float32 and t.numel()
            and (t.stride(-1) == 1 if rows else t.is_contiguous())):
        raise RuntimeError(f"internal error: a {t.dtype} tensor on {t.device} of shape {tuple(t.shape)} and "
                           f"strides {t.stride()} was about to be passed to the C kernels")
    return t.data_ptr()


def _maybe_c(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else _c(t)


def pack_transposed(weight: torch.Tensor) -> torch.Tensor:
    """Panels of ``weight.T`` (K = in features, N = out features): the B of ``x @ weight.T``."""
    N, K = weight.shape
    nr = _state["lib"].panel_width()
    out = weight.new_empty(-(-N // nr) * nr * K)
    weight = _c(weight)
    _state["lib"].pack_panels(_ptr(weight), 1, K, K, N, _ptr(out))
    return out


def pack_plain(weight: torch.Tensor) -> torch.Tensor:
    """Panels of ``weight`` itself (K = rows, N = columns): the B of ``dz @ weight``."""
    K, N = weight.shape
    nr = _state["lib"].panel_width()
    out = weight.new_empty(-(-N // nr) * nr * K)
    weight = _c(weight)
    _state["lib"].pack_panels(_ptr(weight), N, 1, K, N, _ptr(out))
    return out


def _threads() -> int:
    """Threads for a sequence loop: torch's intra-op setting (the C side splits the batch)."""
    return torch.get_num_threads()


def _flags(spec) -> tuple[int, int]:
    return int(spec.cumax_main), _AUX[spec.auxiliary_gate]


class _InputSide:
    """The in-C input projection's operands. Holds the tensors whose pointers go to C, so they
    outlive the call (a temporary's data_ptr would dangle)."""

    def __init__(self, x, weight_ih, bias):
        self.x = x if x.stride(-1) == 1 else x.contiguous()  # x_t's rows may be strided (batch_first)
        self.packed = pack_transposed(weight_ih)
        self.bias = _maybe_c(bias)

    def args(self) -> tuple:
        x = self.x
        return (_ptr(x, rows=True), x.stride(0), x.stride(1), x.shape[-1], _ptr(self.packed), _ptr(self.bias))


class NativeKernels(SequenceKernels):
    """Whole-sequence loops (GEMM + fused update per step, BPTT) and the one-step kernels, in C.

    Takes the place of :class:`~memory_agents.cells.kernels.TorchPointwise` in the kernels'
    loops: where the PyTorch path runs one pointwise call per step from Python, these run the
    whole recurrence in one call."""

    name = "native"

    @staticmethod
    def lstm_step(spec, cell, x, h0, c0, h_out, c_out) -> None:
        """One no-grad step of one layer: x (B, I) with unit stride along I; writes h_out, c_out."""
        B, H = x.shape[0], spec.hidden_size
        GH = spec.num_gates * H
        scratch = x.new_empty(GH + 2 * B * GH)
        ops = _StepOperands(cell, x)
        _state["lib"].lstm_step(*ops.input_args(), *_tie(cell, H), _ptr(h0), _ptr(c0),
                                _ptr(ops.weight_hh), _ptr(scratch), _ptr(h_out),
                                _ptr(c_out), B, H, spec.num_gates, *_flags(spec), int(spec.coupled))

    @staticmethod
    def gru_step(spec, cell, x, h0, h_out) -> None:
        """One no-grad step of one GRU-family layer (see lstm_step)."""
        B, H = x.shape[0], spec.hidden_size
        GH = spec.num_gates * H
        scratch = x.new_empty(GH + 3 * B * GH)
        ops = _StepOperands(cell, x)
        _state["lib"].gru_step(*ops.input_args(), *_tie(cell, H), _ptr(h0), _ptr(ops.weight_hh),
                               _ptr(ops.bias_hn), _ptr(scratch), _ptr(h_out), B, H, spec.num_gates,
                               *_flags(spec))

    @staticmethod
    def _lstm(spec, x, weight_ih, bias, h0, c0, weight_hh, keep, save: bool):
        """(ys, cs, acts): all T steps of c and the gates when save (for a backward pass), else
        min(T, 2) slots of c (c_t in slot t % 2) and one reused slot of gates."""
        T, B, _ = x.shape
        H, GH = spec.hidden_size, weight_hh.shape[0]
        h0, c0, keep = _c(h0), _c(c0), _maybe_c(keep)
        inputs = _InputSide(x, weight_ih, bias)
        ys, cs = x.new_empty(T, B, H), x.new_empty(T if save else min(T, 2), B, H)
        acts = x.new_empty(T if save else 1, B, GH)
        z, scratch = x.new_empty(B, GH), x.new_empty(2, B, H)
        packed = pack_transposed(weight_hh)
        _state["lib"].lstm_sequence(*inputs.args(), _ptr(h0), _ptr(c0), _ptr(keep), _ptr(packed),
                                    _ptr(z), _ptr(acts), int(save), _ptr(ys), _ptr(cs),
                                    _ptr(scratch), T, B, H, spec.num_gates, *_flags(spec), int(spec.coupled),
                                    _threads())
        return ys, cs, acts

    @staticmethod
    def lstm_sequence_backward(spec, acts, cs, c0, keep, dys, weight_hh, dc_last):
        """BPTT: (dz_all, dh_0, dc_0); ``dys`` / ``dc_last`` may be None (zero)."""
        T, B, GH = acts.shape
        H = spec.hidden_size
        c0, keep, dys = _c(c0), _maybe_c(keep), _maybe_c(dys)
        dz_all = torch.empty_like(acts)
        dh = acts.new_zeros(B, H)
        dc = dc_last.clone(memory_format=torch.contiguous_format) if dc_last is not None else acts.new_zeros(B, H)
        scratch = acts.new_empty(2, B, H)
        packed = pack_plain(weight_hh)
        _state["lib"].lstm_sequence_backward(_ptr(acts), _ptr(cs), _ptr(c0), _ptr(keep), _ptr(dys),
                                             _ptr(packed),
                                             _ptr(dz_all), _ptr(dh), _ptr(dc), _ptr(scratch),
                                             T, B, H, spec.num_gates, *_flags(spec), int(spec.coupled), _threads())
        return dz_all, dh, dc

    @staticmethod
    def _gru(spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep, save: bool):
        """(ys, acts, a_ns): with save, the gates and the candidate's hidden half of every step
        (for the backward); without, acts is one reused slot and a_ns None."""
        T, B, _ = x.shape
        H, GH = spec.hidden_size, weight_hh.shape[0]
        h0, keep, hidden_bias = _c(h0), _maybe_c(keep), _maybe_c(hidden_bias)
        inputs = _InputSide(x, weight_ih, bias)
        ys = x.new_empty(T, B, H)
        acts = x.new_empty(T if save else 1, B, GH)
        a_ns = x.new_empty(T, B, H) if save else None
        a, xw, scratch = x.new_empty(B, GH), x.new_empty(B, GH), x.new_empty(B, H)
        packed = pack_transposed(weight_hh)
        _state["lib"].gru_sequence(*inputs.args(), _ptr(h0), _ptr(keep), _ptr(packed), _ptr(hidden_bias),
                                   _ptr(a), _ptr(xw), _ptr(acts), int(save), _ptr(a_ns),
                                   _ptr(ys), _ptr(scratch), T, B, H, spec.num_gates, *_flags(spec),
                                   _threads())
        return ys, acts, a_ns

    @staticmethod
    def gru_sequence_backward(spec, acts, a_ns, ys, h0, keep, dys, weight_hh):
        """BPTT: (da_all, dxn_all, dh_0)."""
        T, B, GH = acts.shape
        H = spec.hidden_size
        h0, keep, dys = _c(h0), _maybe_c(keep), _maybe_c(dys)
        da_all, dxn_all = torch.empty_like(acts), torch.empty_like(ys)
        dh, scratch = acts.new_zeros(B, H), acts.new_empty(2, B, H)
        packed = pack_plain(weight_hh)
        _state["lib"].gru_sequence_backward(_ptr(acts), _ptr(a_ns), _ptr(ys), _ptr(h0),
                                            _ptr(keep), _ptr(dys), _ptr(packed),
                                            _ptr(da_all), _ptr(dxn_all), _ptr(dh), _ptr(scratch),
                                            T, B, H, spec.num_gates, *_flags(spec), _threads())
        return da_all, dxn_all, dh


def available() -> bool:
    """Whether the C kernels could be built or loaded (building them on the first call)."""
    return _load() is not None


def backend_name() -> str:
    """``"native"`` when the C kernels are available for float32 CPU work, else ``"torch"``
    (what one module runs: :meth:`~memory_agents.cells.rnn.GatedRNN.backend`)."""
    return "native" if _load() is not None else "torch"


def backend_reason() -> str:
    """Where the C kernels came from, or why they are unavailable."""
    _load()
    return _state["reason"]
