"""The native library of the cells: building, caching and loading it, with any compiler or none,
and what loading it must not do to the process (its floating-point environment)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from memory_agents.cells import _native

COMPILER = shutil.which("cc") or shutil.which("gcc")
needs_compiler = pytest.mark.skipif(COMPILER is None, reason="no C compiler on this machine")


def _fresh_process(code: str, **env) -> str:
    """Run ``code`` in a new interpreter (the library loads once per process); its stdout."""
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


PROBE = (
    "import time, torch; t = time.time();"
    "from memory_agents.cells import build_rnn; from memory_agents.cells import _native;"
    "rnn = build_rnn('ur-lstm', 2, 8); y, _ = rnn(torch.randn(3, 2, 2)); y.sum().backward();"
    "print(rnn.backend(), round(time.time() - t, 1), '|', _native.backend_reason())"
)

# Runs the C path (forward, backward, one step, both families), then checks what the issue found
# broken: subnormal float32 arithmetic in numpy and torch (flush-to-zero), NaN propagation through
# the kernels (finite-math-only), and agreement with the PyTorch-ops loops.
AFTER_C = """
import numpy as np, torch
from memory_agents.cells import build_rnn, dispatch
from memory_agents.cells.kernels import TorchPointwise
torch.manual_seed(0)
worst = 0.0
for name in ("ur-lstm", "om-lstm", "ur-gru", "gru"):
    rnn = build_rnn(name, 5, 37, num_layers=2)
    assert rnn.backend() == "native", rnn.backend_reason()
    x = torch.randn(6, 19, 5)
    resets = torch.rand(6, 19) < 0.2
    def run():
        xx = x.clone().requires_grad_()
        y, _ = rnn(xx, resets=resets)
        grads = torch.autograd.grad(y.square().sum(), [xx, *rnn.parameters()])
        with torch.no_grad():
            step, _ = rnn(x[:1])
        return [y, step, *grads]
    native = run()
    chosen = dispatch.select_kernels
    dispatch.select_kernels = lambda *tensors: TorchPointwise
    reference = run()
    dispatch.select_kernels = chosen
    worst = max([worst] + [float((a.detach() - b.detach()).abs().max()) for a, b in zip(native, reference)])
    bad = x.clone()
    bad[2, 0, 0] = float("nan")
    with torch.no_grad():
        y, _ = rnn(bad)
    assert torch.isnan(y[2:, 0]).all() and torch.isfinite(y[:, 1:]).all() and torch.isfinite(y[:2]).all()
tiny = np.float32(1e-39)
assert tiny * np.float32(1) == tiny and tiny != 0, "numpy flushes subnormals to zero"
assert (torch.tensor([1e-39]) * 1).item() != 0, "torch flushes subnormals to zero"
assert (torch.tensor([1e-39]) / 2).item() != 0, "torch flushes subnormals to zero"
print("ok", worst)
"""


@needs_compiler
def test_native_kernels_build_in_a_fresh_cache_in_seconds(tmp_path):
    out = _fresh_process(PROBE, MEMORY_AGENTS_CACHE=str(tmp_path))
    backend, seconds = out.split()[:2]
    assert backend == "native", out
    assert float(seconds) < 30, out  # compiling must not add minutes to a first call
    assert list(tmp_path.glob("cells-*.so"))


@needs_compiler
def test_the_c_path_leaves_the_floating_point_environment_alone(tmp_path):
    """-ffast-math once linked crtfastmath: loading the library set flush-to-zero process-wide."""
    out = _fresh_process(AFTER_C, MEMORY_AGENTS_CACHE=str(tmp_path))
    status, worst = out.split()
    assert status == "ok" and float(worst) < 1e-4, out


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed (apt-get install clang)")
def test_clang_builds_the_same_kernels(tmp_path):
    out = _fresh_process(AFTER_C + "from memory_agents.cells import _native; print(_native.backend_reason())",
                         MEMORY_AGENTS_CACHE=str(tmp_path), CC="clang")
    first, reason = out.splitlines()
    assert first.startswith("ok ") and float(first.split()[1]) < 1e-4, out
    assert "clang" in reason and "threads by pthreads" in reason, reason


@needs_compiler
def test_pthreads_when_the_compiler_has_no_openmp(tmp_path):
    """A compiler without OpenMP still gives the C kernels, threaded by pthreads, same results."""
    wrapper = tmp_path / "cc-without-openmp"
    wrapper.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && exit 1; done\nexec {COMPILER} "$@"\n')
    wrapper.chmod(0o755)
    probe = (
        "import torch; from memory_agents.cells import build_rnn, _native;"
        "torch.manual_seed(0); rnn = build_rnn('ur-gru', 3, 24); x = torch.randn(5, 32, 3);"
        "torch.set_num_threads(1); y1, _ = rnn(x); g1 = torch.autograd.grad(y1.sum(), rnn.cells[0].weight_hh);"
        "torch.set_num_threads(2); y2, _ = rnn(x); g2 = torch.autograd.grad(y2.sum(), rnn.cells[0].weight_hh);"
        "print(_native.backend_reason(), torch.equal(y1, y2) and torch.equal(g1[0], g2[0]))"
    )
    out = _fresh_process(probe, MEMORY_AGENTS_CACHE=str(tmp_path / "cache"), CC=str(wrapper))
    assert "threads by pthreads" in out and out.endswith("True"), out


def test_fallback_to_pytorch_when_no_compiler(tmp_path):
    out = _fresh_process(PROBE, MEMORY_AGENTS_CACHE=str(tmp_path), CC="/nonexistent/cc")
    assert out.startswith("torch"), out
    assert "native kernels unavailable" in out and "using PyTorch ops" in out
    out = _fresh_process(PROBE, PATH="", MEMORY_AGENTS_CACHE=str(tmp_path))
    assert out.startswith("torch") and "no C compiler (cc/gcc/clang) on PATH" in out, out
    out = _fresh_process(PROBE, MEMORY_AGENTS_NATIVE="0")
    assert out.startswith("torch") and "MEMORY_AGENTS_NATIVE=0" in out


@needs_compiler
def test_a_corrupted_cached_library_is_rebuilt(tmp_path):
    _fresh_process(PROBE, MEMORY_AGENTS_CACHE=str(tmp_path))
    (library,) = tmp_path.glob("cells-*.so")
    library.write_bytes(b"\x7fELF but not really a shared object")
    out = _fresh_process(PROBE, MEMORY_AGENTS_CACHE=str(tmp_path))
    assert out.startswith("native") and "rebuilt after the cached copy failed to load" in out, out
    out = _fresh_process(PROBE, MEMORY_AGENTS_CACHE=str(tmp_path))  # and the rebuilt file is good
    assert out.startswith("native") and "rebuilt" not in out, out


@needs_compiler
def test_an_unwritable_cache_folder_falls_back_to_a_temporary_one(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder below a file cannot be created, even by root
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = _fresh_process(PROBE, MEMORY_AGENTS_CACHE=str(blocker / "cache"), TMPDIR=str(temp))
    assert out.startswith("native"), out
    assert f"cache folder {blocker / 'cache'} is not writable" in out, out
    assert list(temp.glob("memory_agents-*/cells-*.so")), out


def test_the_cache_key_covers_architecture_and_compiler(monkeypatch):
    name = _native._library_name("gcc (Debian 12.2.0-14) 12.2.0")
    assert name != _native._library_name("clang version 14.0.6")
    assert name != _native._library_name("gcc (Debian 13.1.0-1) 13.1.0")
    monkeypatch.setattr(_native.platform, "machine", lambda: "aarch64" if os.uname().machine != "aarch64" else "x")
    assert name != _native._library_name("gcc (Debian 12.2.0-14) 12.2.0")


def test_build_flags_keep_the_floating_point_environment():
    """No -ffast-math, -Ofast or -funsafe-math-optimizations (they link crtfastmath: FTZ/DAZ for the
    whole process), no -ffinite-math-only (NaN/inf checks compiled away)."""
    forbidden = {"-ffast-math", "-Ofast", "-funsafe-math-optimizations", "-ffinite-math-only"}
    assert not forbidden & set(_native._FLAGS)
