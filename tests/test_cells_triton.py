"""The GPU path of the cells, checked on the CPU: the Triton kernels run in Triton's interpreter
(``TRITON_INTERPRET=1``) on CPU tensors and are held to the step-by-step reference, and the
dispatch's CUDA branches are driven on CPU tensors by substituting its one device test.

Sizes are tiny (the interpreter runs every program of a launch in NumPy): H = 7 with blocks of 4
units leaves a partial block, cumax rows take one partial block of 8, B = 3 rows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install -e '.[gpu]'): the GPU path is untested")

from memory_agents.cells import _native, available_cells, build_rnn, dispatch  # noqa: E402
from memory_agents.cells import kernels as cell_kernels  # noqa: E402
from memory_agents.cells import rnn as rnn_module  # noqa: E402
from memory_agents.cells.kernels import KernelSpec, TorchPointwise  # noqa: E402

from test_cells import _run_fast, as_tuple, public, reference_rnn  # noqa: E402

torch.set_num_threads(1)
ALL = available_cells()
T, B, I, H = 3, 3, 5, 7
_loaded: dict = {}


@pytest.fixture
def tk(monkeypatch):
    """A private copy of memory_agents.cells.triton_kernels whose kernels are interpreted.

    Triton reads TRITON_INTERPRET when a kernel is decorated and again inside a launch, so it is
    set for the test only; the copy leaves the package's own module (compiled, on a GPU) alone."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if "module" not in _loaded:
        path = Path(cell_kernels.__file__).with_name("triton_kernels.py")
        spec = importlib.util.spec_from_file_location("memory_agents.cells._triton_interpreted", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded["module"] = module
    module = _loaded["module"]
    monkeypatch.setattr(module, "MAX_BLOCK_H", 4)  # two blocks over H = 7, the second partial
    return module


def _case(name, resets: bool, num_layers=1, seed=0, **options):
    torch.manual_seed(seed)
    rnn = build_rnn(name, I, H, num_layers=num_layers, **options)
    reference = build_rnn(name, I, H, num_layers=num_layers, **options).double()
    reference.load_state_dict(rnn.state_dict())
    x = torch.randn(T, B, I)
    state = tuple(torch.randn(num_layers, B, H) * 0.5 for _ in range(rnn.num_state_tensors))
    keep = None
    if resets:
        keep = torch.rand(T, B) < 0.3
        keep[1, 0] = keep[2, 2] = True  # at least one reset inside the sequence
    return rnn, reference, x, state, keep


def _outputs_and_grads(model, fn, x, state, dtype):
    """[y, final state..., d/dx, d/dstate..., d/dparameters...] of a loss that weighs every output."""
    xx = x.to(dtype).requires_grad_()
    ss = tuple(s.to(dtype).requires_grad_() for s in state)
    y, final = fn(model, xx, ss)
    loss = (y * torch.linspace(-1, 1, y.shape[-1], dtype=dtype)).sum() + sum((f**2).sum() for f in final)
    grads = torch.autograd.grad(loss, [xx, *ss, *model.parameters()])
    return [y.detach(), *(f.detach() for f in final), *grads]


def _assert_matches(fast, ref, names, atol=1e-5, rtol=1e-4):
    for n, a, b in zip(names, fast, ref, strict=True):
        torch.testing.assert_close(a.double(), b, atol=atol, rtol=rtol, msg=lambda m: f"{n}: {m}")


def _names(rnn, state):
    return (["output"] + [f"final{k}" for k in range(len(state))] + ["x"] + [f"state{k}" for k in range(len(state))]
            + [n for n, _ in rnn.named_parameters()])


# ---------------------------------------------------------------- kernel parity
@pytest.mark.parametrize("with_resets", [False, True])
@pytest.mark.parametrize("name", ALL)
def test_triton_kernels_match_the_reference(name, with_resets, tk):
    """Forward, final state and every gradient (x, h0/c0, all weights and biases) against the
    float64 step-by-step reference; then the no-grad loop (which saves nothing) too."""
    rnn, reference, x, state, resets = _case(name, with_resets)
    fast = _outputs_and_grads(rnn, lambda m, xx, ss: _run_fast(m, xx, ss, resets, tk.TritonKernels), x, state,
                              torch.float32)
    ref = _outputs_and_grads(reference, lambda m, xx, ss: reference_rnn(m, xx, ss, resets), x, state, torch.float64)
    _assert_matches(fast, ref, _names(rnn, state))
    if not with_resets:
        return  # the no-grad loop once per preset (with resets): the interpreter is slow
    with torch.no_grad():
        y, final = _run_fast(rnn, x, state, resets, tk.TritonKernels)
    names = ["no-grad output"] + [f"no-grad final{k}" for k in range(len(state))]
    _assert_matches([y, *final], ref[: 1 + len(state)], names)


@pytest.mark.parametrize("name, options", [
    ("ur-lstm", {}), ("om-lstm", {"bias": False}), ("ur-gru", {"bias": False, "refine_bias": "independent"}),
    ("o-gru", {}),
])
def test_two_layers_batch_first_and_gate_traces(name, options, tk):
    """Two layers (the second layer's dx feeds the first), batch_first (a strided reset mask),
    no bias (the GRU's candidate without b_hn), and the gate trace (the saved activations)."""
    torch.manual_seed(7)
    rnn = build_rnn(name, I, H, num_layers=2, batch_first=True, **options)
    reference = build_rnn(name, I, H, num_layers=2, batch_first=True, **options).double()
    reference.load_state_dict(rnn.state_dict())
    x = torch.randn(B, T, I)
    state = tuple(torch.randn(2, B, H) * 0.5 for _ in range(rnn.num_state_tensors))
    resets = torch.rand(B, T) < 0.3
    resets[0, 2] = True

    def ours(m, xx, ss):
        return _run_fast(m, xx, ss, resets, tk.TritonKernels)

    def theirs(m, xx, ss):
        y, final = reference_rnn(m, xx.transpose(0, 1), ss, resets.t())
        return y.transpose(0, 1), final

    fast = _outputs_and_grads(rnn, ours, x, state, torch.float32)
    ref = _outputs_and_grads(reference, theirs, x, state, torch.float64)
    _assert_matches(fast, ref, _names(rnn, state))
    chosen = dispatch.select_kernels
    try:
        dispatch.select_kernels = lambda *tensors: tk.TritonKernels
        trace = rnn.gate_trace(x, public(rnn, state), resets=resets)
        dispatch.select_kernels = lambda *tensors: TorchPointwise
        expected = rnn.gate_trace(x, public(rnn, state), resets=resets)
    finally:
        dispatch.select_kernels = chosen
    assert trace.keys() == expected.keys() and "g" in trace
    for key in trace:
        torch.testing.assert_close(trace[key], expected[key], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name, dtype, tolerance", [
    ("ur-lstm", torch.float64, 1e-12), ("om-gru", torch.float64, 1e-12),
    ("om-lstm", torch.float16, 5e-3), ("ur-gru", torch.bfloat16, 4e-2),
])
def test_other_dtypes(name, dtype, tolerance, tk):
    """float64 computes in float64 (to rounding); half types compute in float32 between GEMMs."""
    rnn, reference, x, state, resets = _case(name, True, seed=3)
    rnn.to(dtype)
    reference.load_state_dict(rnn.state_dict())  # the same rounded weights
    fast = _outputs_and_grads(rnn, lambda m, xx, ss: _run_fast(m, xx, ss, resets, tk.TritonKernels), x, state, dtype)
    ref = _outputs_and_grads(reference, lambda m, xx, ss: reference_rnn(m, xx, ss, resets), x, state, torch.float64)
    for n, a, b in zip(_names(rnn, state), fast, ref, strict=True):
        assert a.dtype == dtype, n
        assert float((a.double() - b).abs().max()) <= tolerance * max(1.0, float(b.abs().max())), n


@pytest.mark.parametrize("name", ["lstm", "om-lstm", "ur-gru"])
def test_backward_without_output_or_state_gradients(name, tk):
    """The loops' backward takes dys / dc_last = None (zero): the kernels' HAS_DY=False branch."""
    torch.manual_seed(5)
    rnn = build_rnn(name, I, H)
    cell, spec = rnn.cells[0], KernelSpec.from_config(rnn.config, H)
    x, h0 = torch.randn(T, B, I), torch.randn(B, H) * 0.5
    keep = (torch.rand(T, B, 1) > 0.3).float()
    with torch.no_grad():
        if rnn.is_lstm:
            c0 = torch.randn(B, H) * 0.5
            ys, cs, acts = cell_kernels.lstm_loop(spec, x, cell.weight_ih, cell.bias, h0, c0, cell.weight_hh, keep,
                                                  tk.TritonKernels)
            dc_last = torch.randn(B, H)
            fast = tk.TritonKernels.lstm_sequence_backward(spec, acts, cs, c0, keep, None, cell.weight_hh, dc_last)
            ref = cell_kernels._lstm_backward_loop(spec, TorchPointwise, acts, cs, c0, keep, None, cell.weight_hh,
                                                   dc_last)
        else:
            hidden_bias = cell.hidden_bias()
            ys, acts, a_ns = cell_kernels.gru_loop(spec, x, cell.weight_ih, cell.bias, h0, cell.weight_hh,
                                                   hidden_bias, keep, tk.TritonKernels)
            dys = torch.zeros(T, B, H)
            dys[-1] = torch.randn(B, H)  # only the last output matters: the carried path does the rest
            fast = tk.TritonKernels.gru_sequence_backward(spec, acts, a_ns, ys, h0, keep, dys, cell.weight_hh)
            h_prev = cell_kernels._previous(ys, h0, keep)
            ref = cell_kernels._gru_backward_loop(spec, TorchPointwise, acts, a_ns, h_prev, h0, keep, dys,
                                                  cell.weight_hh)
    assert any(r.abs().max() > 0 for r in ref)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_the_gpu_path_never_waits_for_the_device(tk, monkeypatch):
    """No .tolist() / .item() in the Triton loops (the PyTorch-ops loop's per-call host sync),
    resets included: here both raise."""
    def sync(*args, **kwargs):
        raise AssertionError("a host sync in the GPU path")

    rnn = build_rnn("ur-lstm", I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    resets = torch.rand(T, B) < 0.3
    resets[2, 1] = True
    monkeypatch.setattr(torch.Tensor, "tolist", sync)
    monkeypatch.setattr(torch.Tensor, "item", sync)
    y, (h, c) = _run_fast(rnn, x, None, resets, tk.TritonKernels)
    (y.sum() + c.sum()).backward()
    with pytest.raises(AssertionError, match="host sync"):  # the stand-ins are live: the CPU loop syncs
        _run_fast(rnn, x, None, resets, TorchPointwise)


# ---------------------------------------------------------------- dispatch on a (pretend) CUDA device
class _Exploding:
    """Stands in for the C library: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"C entry point {name} was reached")


@pytest.fixture
def on_cuda(tk, monkeypatch):
    """CPU tensors count as CUDA tensors, Triton is the interpreted copy, C is out of reach, and
    every backend that runs is recorded: [("cudnn", ...) | ("triton", method)]."""
    ran = []
    monkeypatch.setattr(dispatch, "is_cuda", lambda t: True)
    monkeypatch.setattr(dispatch, "_triton", {"kernels": tk.TritonKernels, "reason": None})
    monkeypatch.setitem(_native._state, "loaded", True)
    monkeypatch.setitem(_native._state, "lib", _Exploding())
    for method in ("lstm_sequence", "lstm_inference", "lstm_sequence_backward", "gru_sequence", "gru_inference",
                   "gru_sequence_backward"):
        real = getattr(tk.TritonKernels, method)
        monkeypatch.setattr(tk.TritonKernels, method,
                            staticmethod(lambda *a, _real=real, _m=method: (ran.append(("triton", _m)), _real(*a))[1]))

    class _VFSpy:  # torch's real fused RNNs (they run on the CPU too), counted
        def __getattr__(self, op):
            real = getattr(torch._VF, op)
            return lambda *a: (ran.append(("cudnn", op)), real(*a))[1]

    monkeypatch.setattr(rnn_module, "_VF", _VFSpy())
    return ran


def test_cuda_backend_of_every_preset(on_cuda):
    """cuDNN exactly for the cells with torch's equations (whatever their initialisation)."""
    torch_like = {"lstm", "gru", "c-gru", "u-gru"}
    for name in ALL:
        rnn = build_rnn(name, I, H)
        assert rnn.backend() == ("cudnn" if name in torch_like else "triton"), (name, rnn.backend_reason())
        assert dispatch.torch_equations(rnn.config) == (name in torch_like)
    assert "cuDNN" in build_rnn("lstm", I, H).backend_reason()
    assert not on_cuda  # nothing ran


@pytest.mark.parametrize("name", ["lstm", "gru", "ur-lstm", "ur-gru"])
def test_cuda_dispatch_runs_cudnn_for_torch_equations_and_triton_otherwise(name, on_cuda):
    """What runs, and that it matches the reference: forward and every gradient, with and without
    resets, and one no-grad step (an env runner's call, which must not reach C)."""
    torch_like = name in ("lstm", "gru")
    layers = 2 if torch_like else 1  # cuDNN stacks layers itself; Triton's two layers: test above
    rnn, reference, x, state, resets = _case(name, True, num_layers=layers, seed=11)
    family = "lstm" if rnn.is_lstm else "gru"
    for with_resets in (False, True):
        on_cuda.clear()
        r = resets if with_resets else None

        def ours(m, xx, ss):
            y, final = m(xx, public(m, ss), resets=r)
            return y, as_tuple(final)

        fast = _outputs_and_grads(rnn, ours, x, state, torch.float32)
        ref = _outputs_and_grads(reference, lambda m, xx, ss: reference_rnn(m, xx, ss, r), x, state, torch.float64)
        _assert_matches(fast, ref, _names(rnn, state))
        if torch_like and not with_resets:  # the whole stack in one fused call, its backward torch's
            assert on_cuda == [("cudnn", family)]
        else:  # per layer the forward loop, then (in reverse) the backward loop
            assert on_cuda == ([("triton", f"{family}_sequence")] * layers
                               + [("triton", f"{family}_sequence_backward")] * layers)
        on_cuda.clear()
        with torch.no_grad():
            step, _ = rnn(x[:1], public(rnn, state), resets=r[:1] if r is not None else None)
        assert on_cuda == ([("cudnn", family)] if torch_like and not with_resets
                           else [("triton", f"{family}_inference")] * layers)
        step_ref, _ = reference_rnn(reference, x[:1].double(), tuple(s.double() for s in state),
                                    r[:1] if r is not None else None)
        torch.testing.assert_close(step.double(), step_ref, atol=1e-5, rtol=1e-5)


def test_cuda_without_triton_runs_pytorch_ops_and_says_how_to_fix_it(on_cuda, monkeypatch):
    monkeypatch.setattr(dispatch, "_triton", {})
    monkeypatch.setattr(dispatch, "_announced", set())
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(dispatch.importlib.util, "find_spec",
                        lambda name, *a: None if name == "triton" else real_find_spec(name, *a))
    rnn = build_rnn("ur-gru", I, H)
    assert rnn.backend() == "torch" and "pip install 'memory-agents[gpu]'" in rnn.backend_reason()
    assert build_rnn("gru", I, H).backend() == "cudnn"  # cuDNN needs no triton
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            rnn(torch.randn(T, B, I), resets=torch.rand(T, B) < 0.3)[0].sum().backward()
    fallbacks = [w for w in caught if issubclass(w.category, dispatch.NativeFallbackWarning)]
    assert len(fallbacks) == 1 and "triton is not installed" in str(fallbacks[0].message)
    assert not on_cuda  # neither Triton nor cuDNN ran


def test_memory_agents_triton_0_chooses_pytorch_ops_silently(on_cuda, monkeypatch):
    monkeypatch.setattr(dispatch, "_triton", {})
    monkeypatch.setenv("MEMORY_AGENTS_TRITON", "0")
    rnn = build_rnn("ur-lstm", I, H)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnn(torch.randn(T, B, I))
    assert rnn.backend() == "torch" and rnn.backend_reason() == dispatch.TRITON_DISABLED and not on_cuda


def test_cpu_dispatch_is_unchanged():
    """Without the substitute device test, float32 CPU calls still go to C (or PyTorch ops)."""
    rnn = build_rnn("lstm", I, H)
    assert rnn.backend() == ("native" if _native.available() else "torch")
    assert dispatch.select_kernels(torch.zeros(2, 2)) in (_native.NativeKernels, TorchPointwise)
    assert not dispatch.uses_cudnn(rnn.config, None, torch.zeros(2, 2))


# ---------------------------------------------------------------- the GPU benchmark's code path
def test_the_cuda_benchmark_runs(tmp_path):
    """benchmarks/cells.py --device cuda, on CPU tensors with the Triton kernels interpreted: tiny
    shapes, one repeat, a Triton preset and a cuDNN one of each family."""
    out = tmp_path / "cells_cuda.json"
    script = Path(__file__).parents[1] / "benchmarks" / "cells.py"
    result = subprocess.run(
        [sys.executable, str(script), "--device", "cuda", "--cpu-as-cuda", "--presets", "ur-lstm,lstm,gru",
         "--shapes", "tiny,tiny-step", "--repeats", "1", "--warmup", "1", "--calls", "1", "--out", str(out)],
        env={**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GPU target: ur-lstm training >= 0.8x torch.nn.LSTM on cuDNN" in result.stdout
    data = json.loads(out.read_text())
    assert data["meta"]["device"] == "cuda" and "triton" in data["meta"]
    backends = {(r["shape"], r["module"]): r.get("backend") for r in data["rows"]}
    assert backends == {
        ("tiny", "torch.nn.LSTM"): None, ("tiny", "ur-lstm"): "triton", ("tiny", "lstm"): "triton",  # resets
        ("tiny", "torch.nn.GRU"): None, ("tiny", "gru"): "triton",
        ("tiny-step", "torch.nn.LSTM"): None, ("tiny-step", "ur-lstm"): "triton", ("tiny-step", "lstm"): "cudnn",
        ("tiny-step", "torch.nn.GRU"): None, ("tiny-step", "gru"): "cudnn",
    }
    assert all(r["train_tokens_per_s"] > 0 and r["forward_tokens_per_s"] > 0 for r in data["rows"])
    assert [(t["shape"], t["module"], t["target"]) for t in data["targets"]] == [("tiny", "ur-lstm", 0.8)]


# ---------------------------------------------------------------- the GPU compiler
# Every gate configuration of the presets: (cumax, auxiliary gate, coupled) for the LSTM family,
# (cumax, auxiliary gate) for the GRU family.
LSTM_VARIANTS = [(False, 0, False), (False, 0, True), (True, 0, True), (False, 1, True), (True, 2, True)]
GRU_VARIANTS = [(False, 0), (True, 0), (False, 1), (True, 2)]


def test_the_kernels_compile_for_a_gpu_without_one(tmp_path, monkeypatch):
    """Triton's compiler down to PTX for sm_90 (no GPU needed): it catches what the interpreter
    cannot, e.g. a value whose type differs between the branches of a constexpr. Every preset's
    gate configuration in float32 (each flag both ways somewhere), and float16 / float64 once."""
    from triton import compile as triton_compile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("TRITON_HOME", str(tmp_path))  # the compile cache: tests write only under tmp
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "cache"))
    path = Path(cell_kernels.__file__).with_name("triton_kernels.py")
    spec = importlib.util.spec_from_file_location("memory_agents.cells._triton_compiled", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def build(kernel, pointers: int, dtype: str, **constexprs):
        names = kernel.arg_names
        signature = {n: ("*" + dtype if k < pointers else "i32" if n == "H" else "constexpr")
                     for k, n in enumerate(names)}
        compute = module.tl.float64 if dtype == "fp64" else module.tl.float32
        source = ASTSource(fn=kernel, signature=signature,
                           constexprs={**constexprs, "BLOCK_H": 256 if not constexprs["CUMAX"] else 512,
                                       "COMPUTE": compute})
        compiled = triton_compile(source, target=GPUTarget("cuda", 90, 32),
                                  options={"num_warps": 4, "enable_fp_fusion": True})
        assert ".entry" in compiled.asm["ptx"]

    jobs = 0
    for k, (cumax, aux, coupled) in enumerate(LSTM_VARIANTS):
        gates = 3 + (aux != 0) + (not coupled)
        dtype = {0: "fp16", 1: "fp64"}.get(k, "fp32")
        build(module._lstm_forward_step, 7, dtype, G=gates, HAS_KEEP=k % 2 == 0, STORE_ACT=k != 2, CUMAX=cumax,
              AUX=aux, COUPLED=coupled)
        build(module._lstm_backward_step, 9, dtype, G=gates, HAS_KEEP=k % 2 == 1, HAS_DY=k != 3, CUMAX=cumax,
              AUX=aux, COUPLED=coupled)
        jobs += 2
    for k, (cumax, aux) in enumerate(GRU_VARIANTS):
        gates = 3 + (aux != 0)
        build(module._gru_forward_step, 8, "fp32", G=gates, HAS_KEEP=k % 2 == 0, HAS_BIAS=k != 1,
              STORE_ACT=k != 2, CUMAX=cumax, AUX=aux)
        build(module._gru_backward_step, 9, "fp32", G=gates, HAS_KEEP=k % 2 == 1, HAS_DY=k != 3, CUMAX=cumax,
              AUX=aux)
        jobs += 2
    assert jobs == 18
