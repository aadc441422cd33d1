"""The cells' dispatch between the C kernels and the PyTorch-ops loops, and the torch.nn interface
around it: every dtype/device a module accepts gives the reference answer, every mismatch gives
torch.nn.LSTM's error, and nothing that fails the predicate reaches C."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from memory_agents.cells import _native, build_rnn, dispatch
from memory_agents.cells.kernels import KernelSpec

from test_cells import as_tuple, public, reference_rnn

torch.set_num_threads(1)
PRESETS = ["lstm", "ur-lstm", "om-lstm", "gru", "ur-gru", "o-gru"]


def _child(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=180)


# ---------------------------------------------------------------- dtypes the PyTorch path runs
# Tolerances relative to the float64 reference: 1e-5 where the dtype allows it, else a few ulps of
# the dtype accumulated over the sequence.
TOLERANCE = {torch.float64: 1e-5, torch.float16: 5e-3, torch.bfloat16: 4e-2}  # measured: 7e-16, 1.5e-3, 1.2e-2


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", PRESETS)
def test_other_dtypes_run_pytorch_ops_and_match_the_reference(name, dtype):
    torch.manual_seed(0)
    T, B, I, H = 6, 3, 4, 8
    rnn = build_rnn(name, I, H, num_layers=2).to(dtype)
    reference = build_rnn(name, I, H, num_layers=2).double()
    reference.load_state_dict(rnn.state_dict())  # the same (rounded) weights, in float64
    x = torch.randn(T, B, I).to(dtype)
    resets = torch.rand(T, B) < 0.25
    state = tuple((torch.randn(2, B, H) * 0.5).to(dtype) for _ in range(rnn.num_state_tensors))

    def run(module, fn, cast):
        xx = x.to(cast).requires_grad_()
        ss = tuple(s.to(cast).requires_grad_() for s in state)
        y, final = fn(module, xx, ss)
        loss = y.float().square().sum() + sum(f.float().square().sum() for f in final)
        grads = torch.autograd.grad(loss, [xx, *ss, *module.parameters()])
        return [y, *final, *grads]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dispatch.NativeFallbackWarning)
        fast = run(rnn, lambda m, xx, ss: (lambda y, s: (y, as_tuple(s)))(*m(xx, public(m, ss), resets=resets)),
                   dtype)
    ref = run(reference, lambda m, xx, ss: reference_rnn(m, xx, ss, resets), torch.float64)
    assert rnn.backend() == "torch" and dtype.__repr__() in rnn.backend_reason()
    tol = TOLERANCE[dtype]
    for a, b in zip(fast, ref):
        assert a.dtype == dtype
        scale = b.abs().max().clamp_min(1.0)
        assert (a.double() - b).abs().max() <= tol * scale, (a, b)


def test_float32_reports_native_where_the_library_is():
    rnn = build_rnn("ur-lstm", 2, 4)
    assert rnn.backend() == ("native" if _native.available() else "torch")
    assert rnn.double().backend() == "torch" and "float32-only" in rnn.backend_reason()
    assert rnn.to("meta").backend() == "torch" and "CPU-only" in rnn.backend_reason()


# ---------------------------------------------------------------- mismatches: torch.nn.LSTM's errors
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["ur-lstm", "ur-gru"])
def test_model_and_input_dtypes_must_match_like_torch(name, dtype):
    rnn = build_rnn(name, 3, 8).to(dtype)
    x = torch.randn(5, 2, 3)
    message = rf"RNN input dtype \(torch.float32\) does not match weight dtype \({dtype}\)"
    with pytest.raises(ValueError, match=message):
        torch.nn.LSTM(3, 8).to(dtype)(x)  # the error we mirror
    for grad in (True, False):
        with torch.set_grad_enabled(grad), pytest.raises(ValueError, match=message):
            rnn(x)
        with torch.set_grad_enabled(grad), pytest.raises(ValueError, match=message):
            rnn(x[:1])  # one step: the env runner's path


def test_bfloat16_model_with_float32_input_does_not_kill_the_process():
    """Once the C path sized a buffer in bfloat16 and wrote float32 into it: malloc() aborted."""
    code = (
        "import torch; from memory_agents.cells import build_rnn\n"
        "for name in ('ur-lstm', 'ur-gru'):\n"
        "    rnn = build_rnn(name, 16, 64).bfloat16()\n"
        "    for x, grad in ((torch.randn(20, 8, 16), True), (torch.randn(20, 8, 16), False),\n"
        "                    (torch.randn(1, 8, 16), False)):\n"
        "        try:\n"
        "            with torch.set_grad_enabled(grad): rnn(x)\n"
        "        except ValueError as error: print('refused:', error)\n"
        "print('alive')\n"
    )
    out = _child(code)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "alive" and sum("does not match weight dtype (torch.bfloat16)" in x for x in lines) == 6


@pytest.mark.parametrize("name", ["ur-lstm", "ur-gru"])
def test_state_dtype_and_device_must_match_the_input(name):
    rnn = build_rnn(name, 3, 8)
    x = torch.randn(5, 2, 3)

    def state(**kw):
        h = torch.zeros(1, 2, 8, **kw)
        return (h, torch.zeros(1, 2, 8)) if rnn.is_lstm else h

    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            with pytest.raises(ValueError, match=r"hidden state dtype \(torch.float64\) does not match input dtype"):
                rnn(x, state(dtype=torch.float64))
            with pytest.raises(ValueError, match=r"hidden state dtype \(torch.float64\) does not match input dtype"):
                rnn(x[:1], state(dtype=torch.float64))
            with pytest.raises(RuntimeError, match="Input and hidden tensors are not at the same device.*meta"):
                rnn(x, state(device="meta"))
            with pytest.raises(RuntimeError, match="Input and hidden tensors are not at the same device.*meta"):
                rnn(x[:1], state(device="meta"))
    with pytest.raises(RuntimeError, match="Input and parameter tensors are not at the same device"):
        rnn(x.to("meta"))
    with pytest.raises(RuntimeError, match="Input and parameter tensors are not at the same device"):
        torch.nn.LSTM(3, 8)(x.to("meta"))  # the error we mirror


class _Exploding:
    """Stands in for the C library: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"C entry point {name} was reached")


def test_nothing_that_fails_the_predicate_reaches_c(monkeypatch):
    monkeypatch.setitem(_native._state, "loaded", True)
    monkeypatch.setitem(_native._state, "lib", _Exploding())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dispatch.NativeFallbackWarning)
        for dtype in (torch.float64, torch.bfloat16, torch.float16):
            for name in ("ur-lstm", "ur-gru"):
                rnn = build_rnn(name, 3, 8).to(dtype)
                x = torch.randn(4, 2, 3, dtype=dtype, requires_grad=True)
                rnn(x)[0].float().sum().backward()
                with torch.no_grad():
                    rnn(x[:1])
                rnn.gate_trace(x)
        rnn = build_rnn("ur-lstm", 3, 8)
        x = torch.randn(4, 0, 3, requires_grad=True)  # an empty batch is refused too
        rnn(x)[0].sum().backward()
        with torch.no_grad():
            rnn(x[:1])
    # and float32 does reach it: the stand-in above could have failed
    with pytest.raises(AssertionError, match="C entry point"):
        rnn(torch.randn(4, 2, 3))


def test_the_c_wrappers_refuse_pointers_of_the_wrong_kind():
    """The last line of defence: a wrong tensor handed to a C wrapper is an exception."""
    if not _native.available():
        pytest.skip(f"native kernels unavailable here: {_native.backend_reason()}")
    rnn = build_rnn("ur-lstm", 3, 8)
    spec = KernelSpec.from_config(rnn.config, 8)
    cell = rnn.cells[0]
    x, h0 = torch.randn(4, 2, 3), torch.zeros(2, 8)
    with pytest.raises(RuntimeError, match="internal error: a torch.float64 tensor"):
        _native.NativeKernels.lstm_inference(spec, x, cell.weight_ih.detach().double(), None, h0, h0,
                                             cell.weight_hh.detach(), None)
    with pytest.raises(RuntimeError, match="internal error: a torch.float32 tensor on meta"):
        _native.NativeKernels.lstm_inference(spec, x, cell.weight_ih.detach(), None, h0.to("meta"), h0,
                                             cell.weight_hh.detach(), None)


# ---------------------------------------------------------------- fallback warning
def test_fallback_warns_once_per_reason():
    code = (
        "import warnings, torch\n"
        "warnings.simplefilter('always')\n"
        "from memory_agents.cells import build_rnn\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    rnn = build_rnn('ur-lstm', 2, 8)\n"
        "    for _ in range(3):\n"
        "        rnn(torch.randn(3, 2, 2))[0].sum().backward()\n"
        "        with torch.no_grad(): rnn(torch.randn(1, 2, 2))\n"
        "    rnn.double()(torch.randn(3, 2, 2, dtype=torch.float64))\n"
        "for w in caught: print(w.category.__name__, '|', w.message)\n"
        "print(rnn.float().backend())\n"
    )
    out = _child(code, PATH="", MEMORY_AGENTS_CACHE="/nonexistent-cache-never-created")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "torch"
    warned = [line for line in lines if line.startswith("NativeFallbackWarning")]
    assert len(warned) == 2, lines  # no compiler (once, for 9 calls); float64 (once)
    assert "no C compiler (cc/gcc/clang) on PATH" in warned[0] and "Fix: install a C compiler" in warned[0]
    assert "float32-only" in warned[1]


def test_disabled_native_path_does_not_warn():
    code = (
        "import warnings, torch\n"
        "from memory_agents.cells import build_rnn\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    rnn = build_rnn('ur-gru', 2, 8); rnn(torch.randn(3, 2, 2))\n"
        "print(len(caught), rnn.backend(), rnn.backend_reason())\n"
    )
    out = _child(code, MEMORY_AGENTS_NATIVE="0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0 torch disabled by MEMORY_AGENTS_NATIVE=0"


# ---------------------------------------------------------------- the torch.nn interface
@pytest.mark.parametrize("name", ["lstm", "ur-lstm", "gru", "ur-gru"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch_runs_forward_and_backward_like_torch(name, batch_first):
    torch.manual_seed(1)
    module = (torch.nn.LSTM if "lstm" in name else torch.nn.GRU)(3, 8, num_layers=2, batch_first=batch_first)
    rnn = build_rnn(name, 3, 8, num_layers=2, batch_first=batch_first)
    shape = (0, 5, 3) if batch_first else (5, 0, 3)
    for model in (module, rnn):
        x = torch.randn(shape, requires_grad=True)
        y, state = model(x)
        y.sum().backward()
        assert y.shape == shape[:2] + (8,) and x.grad.shape == shape
        assert all(s.shape == (2, 0, 8) for s in as_tuple(state))
        assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
        with torch.no_grad():  # one step without autograd: the env runner's path
            step = torch.randn((0, 1, 3) if batch_first else (1, 0, 3))
            assert model(step)[0].shape == step.shape[:2] + (8,)


def test_resets_must_be_bool_or_integer_zero_one():
    torch.manual_seed(2)
    rnn = build_rnn("ur-gru", 2, 8, batch_first=True)
    x = torch.randn(2, 6, 2)
    as_bool = torch.zeros(2, 6, dtype=torch.bool)
    as_bool[0, 3] = as_bool[1, 1] = True
    expected, _ = rnn(x, resets=as_bool)
    for ints in (as_bool.long(), as_bool.to(torch.uint8), as_bool.int().tolist()):
        torch.testing.assert_close(rnn(x, resets=ints)[0], expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="resets must be a bool tensor.*float32"):
        rnn(x, resets=as_bool.float() * 0.5)  # 0.5 once counted as a reset
    with pytest.raises(ValueError, match="resets must be a bool tensor.*float32"):
        rnn(x, resets=[[0.0] * 6, [1.0] * 6])
    with pytest.raises(ValueError, match="resets must be a bool tensor .or integers 0/1.*other values"):
        rnn(x, resets=as_bool.long() * 2)


def test_options_are_type_checked_and_ignored_options_are_errors():
    with pytest.raises(ValueError, match="batch_first must be a bool, got 'yes'"):
        build_rnn("ur-lstm", 2, 8, batch_first="yes")
    with pytest.raises(ValueError, match="bias must be a bool, got 1"):
        build_rnn("ur-lstm", 2, 8, bias=1)
    with pytest.raises(ValueError, match="chrono_tmax='5' must be a number > 2"):
        build_rnn("c-lstm", 2, 8, chrono_tmax="5")
    with pytest.raises(ValueError, match="chrono_tmax=True must be a number > 2"):
        build_rnn("c-gru", 2, 8, chrono_tmax=True)
    with pytest.raises(ValueError, match="chrono_tmax=50 applies only to main_gate_init='chrono', not 'uniform'"):
        build_rnn("ur-lstm", 2, 8, chrono_tmax=50)
    with pytest.raises(ValueError, match="refine_bias='independent' applies only to auxiliary_gate='refine', "
                                         "not 'none'"):
        build_rnn("lstm", 2, 8, refine_bias="independent")
    with pytest.raises(ValueError, match="refine_bias='tied_negative' applies only to auxiliary_gate='refine'"):
        build_rnn("om-gru", 2, 8, refine_bias="tied_negative")
    with pytest.raises(ValueError, match="dropout must be a number"):
        build_rnn("gru", 2, 8, dropout=True)
    # the options that do apply are still taken
    assert build_rnn("c-lstm", 2, 8, chrono_tmax=50).config.chrono_tmax == 50
    assert build_rnn("lstm", 2, 8, main_gate_init="chrono", chrono_tmax=7.5).config.chrono_tmax == 7.5
    assert build_rnn("ur-gru", 2, 8, refine_bias="independent").config.refine_bias == "independent"


def test_gru_returns_h_n_like_torch_and_takes_it_back():
    torch.manual_seed(3)
    module = torch.nn.GRU(3, 8, num_layers=2)
    rnn = build_rnn("gru", 3, 8, num_layers=2)
    x = torch.randn(5, 2, 3)
    for model in (module, rnn):
        y, h = model(x)
        assert isinstance(h, torch.Tensor) and h.shape == (2, 2, 8)
        y2, h2 = model(x, h)  # the state goes back in as it came out
        assert isinstance(h2, torch.Tensor)
    assert isinstance(rnn.initial_state(2), torch.Tensor)
    assert isinstance(build_rnn("ur-lstm", 3, 8).initial_state(2), tuple)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("with_resets", [False, True])
@pytest.mark.parametrize("name", PRESETS)
def test_cuda_runs_its_backend_and_matches_the_reference(name, with_resets, monkeypatch):
    """On a GPU: cuDNN for the torch equations without resets, else Triton (with the gpu extra) or
    the PyTorch-ops loop; each held to the CPU reference."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # cuDNN's RNNs would use TF32
    torch.manual_seed(4)
    T, B, I, H = 7, 3, 4, 8
    rnn = build_rnn(name, I, H, num_layers=2)
    x = torch.randn(T, B, I)
    resets = (torch.rand(T, B) < 0.25) if with_resets else None

    def run(model, fn, device):
        xx = x.to(device).requires_grad_()
        y, final = fn(model, xx)
        loss = y.square().sum() + sum(f.square().sum() for f in final)
        return [t.cpu() for t in (y, *final, *torch.autograd.grad(loss, [xx, *model.parameters()]))]

    ref = run(rnn, lambda m, xx: reference_rnn(m, xx, None, resets), "cpu")
    gpu = rnn.cuda()
    gpu_resets = resets.cuda() if resets is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dispatch.NativeFallbackWarning)
        out = run(gpu, lambda m, xx: (lambda y, s: (y, as_tuple(s)))(*m(xx, resets=gpu_resets)), "cuda")
    triton = dispatch.triton_refusal(x.cuda()) is None
    expected = "cudnn" if name in ("lstm", "gru") else ("triton" if triton else "torch")
    assert gpu.backend() == expected, gpu.backend_reason()
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
