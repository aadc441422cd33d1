"""Tests that would catch a wrong cell: parity of the fast path with a step-by-step reference
written from the spec's equations, torch parity, UGI/chrono distributions, refine-gate algebra."""

from __future__ import annotations

import copy
import io
import math
import pickle

import pytest
import torch
from scipy import stats

from memory_agents.cells import (
    GatedGRUCell,
    GatedLSTMCell,
    available_cells,
    build_rnn,
    from_torch,
)
from memory_agents.cells import _native, dispatch
from memory_agents.cells.kernels import TorchPointwise

torch.set_num_threads(1)
ALL = available_cells()


# ---------------------------------------------------------------- reference, from PAPER.md
def sigmoid(z):
    return 1.0 / (1.0 + torch.exp(-z))


def reference_step(cell, x, state):
    """The spec's equations, written out independently of the package's gate helpers."""
    cfg, H = cell.config, cell.hidden_size
    names = cfg.gate_names
    W_ih, W_hh, b = cell.weight_ih, cell.weight_hh, cell.bias
    blocks = lambda m: dict(zip(names, m.split(H, dim=-1)))  # noqa: E731
    bx = blocks(x @ W_ih.t() + (b if b is not None else 0.0))
    bias = blocks(b) if b is not None else None
    h = state[0]
    bh = blocks(h @ W_hh.t())
    if cfg.family == "gru" and cell.bias_hn is not None:
        bh["n"] = bh["n"] + cell.bias_hn
    pre = {k: bx[k] + bh[k] for k in names if k != "n"}
    if cfg.auxiliary_gate == "refine" and cfg.refine_bias == "tied_negative":
        pre["r"] = pre["r"] - bias["f"]  # r = sigma(L_r - b_f), paper §3
    if cfg.main_gate_activation == "sigmoid":
        f = sigmoid(pre["f"])
    else:  # cumax(z) = cumsum(softmax(z))
        e = torch.exp(pre["f"] - pre["f"].max(-1, keepdim=True).values)
        f = torch.cumsum(e / e.sum(-1, keepdim=True), -1)
    if cfg.auxiliary_gate == "refine":
        r = sigmoid(pre["r"])
        g = r * (1 - (1 - f) ** 2) + (1 - r) * f**2
    elif cfg.auxiliary_gate == "master":
        m = sigmoid(pre["m"])
        g = m * f + (1 - m) * f**2
    else:
        g = f
    if cfg.family == "lstm":
        c = state[1]
        i = sigmoid(pre["i"]) if "i" in pre else 1 - g
        u = torch.tanh(pre["u"])
        o = sigmoid(pre["o"])
        c = g * c + i * u
        return (o * torch.tanh(c), c)
    s = sigmoid(pre["s"])
    n = torch.tanh(bx["n"] + s * bh["n"])
    return (g * h + (1 - g) * n,)


def as_tuple(state):
    """A module's state, (h, c) or h, as a tuple of tensors."""
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


def public(rnn, states):
    """A tuple of state tensors in the structure the module takes: (h, c) or h."""
    return tuple(states) if rnn.is_lstm else states[0]


def reference_rnn(rnn, x, state=None, resets=None):
    """Time-major step loop over the layers, autograd through everything. Returns (y, states), the
    states as a tuple ((h,) for the GRU family)."""
    T, B = x.shape[0], x.shape[1]
    state = as_tuple(rnn.initial_state(B, dtype=x.dtype) if state is None else state)
    finals = []
    for layer, cell in enumerate(rnn.cells):
        s = tuple(t[layer] for t in state)
        outs = []
        for t in range(T):
            if resets is not None:
                keep = (~resets[t]).to(x.dtype).unsqueeze(-1)
                s = tuple(v * keep for v in s)
            s = reference_step(cell, x[t], s)
            outs.append(s[0])
        x = torch.stack(outs)
        finals.append(s)
    return x, tuple(torch.stack([f[k] for f in finals]) for k in range(len(state)))


def _backends():
    yield "torch", TorchPointwise
    if _native.available():
        yield "native", _native.NativeKernels


def _run_fast(rnn, x, state, resets, kernels):
    """rnn(x, state) with ``kernels`` chosen for every float32 CPU call (as the dispatch would);
    state a tuple, returned as a tuple."""
    old = dispatch.select_kernels
    dispatch.select_kernels = lambda *tensors: kernels
    try:
        y, final = rnn(x, None if state is None else public(rnn, state), resets=resets)
        return y, as_tuple(final)
    finally:
        dispatch.select_kernels = old


# ---------------------------------------------------------------- parity
@pytest.mark.parametrize("backend", [b for b, _ in _backends()])
@pytest.mark.parametrize("with_resets", [False, True])
@pytest.mark.parametrize("name", ALL)
def test_fast_path_matches_reference_forward_and_gradients(name, with_resets, backend):
    pointwise = dict(_backends())[backend]
    torch.manual_seed(0)
    T, B, I, H = 9, 3, 4, 8
    rnn = build_rnn(name, I, H, num_layers=2)
    x = torch.randn(T, B, I)
    state = tuple(torch.randn(2, B, H) * 0.5 for _ in range(rnn.num_state_tensors))
    resets = (torch.rand(T, B) < 0.25) if with_resets else None
    if resets is not None:
        resets[0, 0] = resets[4, 1] = True

    def run(fn):
        xx = x.clone().requires_grad_()
        ss = tuple(s.clone().requires_grad_() for s in state)
        y, final = fn(xx, ss)
        loss = (y * torch.linspace(-1, 1, H)).sum() + sum((f**2).sum() for f in final)
        grads = torch.autograd.grad(loss, [xx, *ss, *rnn.parameters()])
        return y, final, grads

    y_ref, s_ref, g_ref = run(lambda xx, ss: reference_rnn(rnn, xx, ss, resets))
    y_fast, s_fast, g_fast = run(lambda xx, ss: _run_fast(rnn, xx, ss, resets, pointwise))
    torch.testing.assert_close(y_fast, y_ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(s_fast, s_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    names = ["x"] + [f"state{k}" for k in range(len(state))] + [n for n, _ in rnn.named_parameters()]
    for n, a, b in zip(names, g_fast, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m: f"gradient of {n}: {m}")


@pytest.mark.parametrize("name", ALL)
def test_inference_path_equals_training_path(name):
    torch.manual_seed(1)
    rnn = build_rnn(name, 3, 6, batch_first=True)
    x = torch.randn(2, 5, 3)
    resets = torch.tensor([[0, 0, 1, 0, 0], [0, 1, 0, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        y0, s0 = rnn(x, resets=resets)
    y1, s1 = rnn(x.requires_grad_(), resets=resets)
    torch.testing.assert_close(y0, y1.detach())


@pytest.mark.parametrize("backend", [b for b, _ in _backends()])
@pytest.mark.parametrize("name", ALL)
def test_single_step_inference_matches_reference(name, backend):
    """T = 1 without autograd (what an RL env runner calls) has its own short path."""
    pointwise = dict(_backends())[backend]
    torch.manual_seed(2)
    B, I, H = 4, 3, 8
    rnn = build_rnn(name, I, H, num_layers=2, batch_first=True)
    state = tuple(torch.randn(2, B, H) * 0.5 for _ in range(rnn.num_state_tensors))
    resets = torch.tensor([[True], [False], [True], [False]])
    for step in range(3):  # carry the state: a reset must only clear the rows that reset
        x = torch.randn(B, 1, I)
        with torch.no_grad():
            y_fast, fast = _run_fast(rnn, x, state, resets if step == 1 else None, pointwise)
            y_ref, ref = reference_rnn(rnn, x.transpose(0, 1), state, resets.t() if step == 1 else None)
        torch.testing.assert_close(y_fast, y_ref.transpose(0, 1), atol=1e-5, rtol=1e-5)
        for a, b in zip(fast, ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        state = fast


def _native_or_skip():
    if not _native.available():
        pytest.skip(f"native kernels unavailable here: {_native.backend_reason()}")
    return _native.NativeKernels


# Sizes that leave partial register tiles and GEMM panels everywhere (H, I, B not multiples of
# any vector width), with several full tiles of rows so the batch splits across threads.
ODD = dict(T=6, B=19, I=21, H=37)
ODD_CELLS = ["lstm", "ur-lstm", "om-lstm", "r-lstm", "gru", "ur-gru", "om-gru"]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", ODD_CELLS)
def test_native_sequence_loops_match_pytorch_ops_at_odd_sizes(name, threads, monkeypatch):
    """The C loops (own GEMM, batch split over threads) against the PyTorch-ops path."""
    native = _native_or_skip()
    monkeypatch.setattr(_native, "_threads", lambda: threads)
    torch.manual_seed(3)
    T, B, I, H = ODD["T"], ODD["B"], ODD["I"], ODD["H"]
    rnn = build_rnn(name, I, H, num_layers=2)
    x = torch.randn(T, B, I)
    state = tuple(torch.randn(2, B, H) * 0.5 for _ in range(rnn.num_state_tensors))
    resets = torch.rand(T, B) < 0.2

    def run(pointwise):
        xx = x.clone().requires_grad_()
        ss = tuple(s.clone().requires_grad_() for s in state)
        y, final = _run_fast(rnn, xx, ss, resets, pointwise)
        loss = (y * torch.linspace(-1, 1, H)).sum() + sum((f**2).sum() for f in final)
        with torch.no_grad():
            y_inference, _ = _run_fast(rnn, x, state, resets, pointwise)
        return [y, *final, y_inference, *torch.autograd.grad(loss, [xx, *ss, *rnn.parameters()])]

    for a, b in zip(run(native), run(TorchPointwise)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_native_threads_split_the_batch_without_changing_results(monkeypatch):
    """Rows are independent, so any thread count gives bit-identical outputs and gradients."""
    _native_or_skip()
    torch.manual_seed(4)
    rnn = build_rnn("ur-lstm", 5, 40)
    x = torch.randn(7, 48, 5)
    resets = torch.rand(7, 48) < 0.1
    results = []
    for threads in (1, 2, 5):
        monkeypatch.setattr(_native, "_threads", lambda threads=threads: threads)
        xx = x.clone().requires_grad_()
        y, (h, c) = rnn(xx, resets=resets)
        grads = torch.autograd.grad(y.sum() + c.sum(), [xx, *rnn.parameters()])
        results.append([y, h, c, *grads])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name, options", [
    (name, options) for name in ["ur-lstm", "om-lstm", "lstm", "ur-gru", "gru", "o-gru"]
    for options in [{}, {"bias": False}] + ([{"refine_bias": "independent"}] if name.startswith("ur") else [])
])
def test_one_step_kernel_matches_pytorch_ops_at_odd_sizes(name, options):
    """The no-grad T = 1 path (dot-product GEMM on unpacked weights) against PyTorch ops."""
    native = _native_or_skip()
    if options.get("bias") is False and name.startswith("ur"):
        options = {**options, "refine_bias": "independent"}  # the tie needs a bias
    torch.manual_seed(5)
    B, I, H = ODD["B"], ODD["I"], ODD["H"]
    rnn = build_rnn(name, I, H, num_layers=2, **options)
    state = tuple(torch.randn(2, B, H) * 0.5 for _ in range(rnn.num_state_tensors))
    for layout in ("time_major", "batch_first_strided"):
        x = torch.randn(1, B, I) if layout == "time_major" else torch.randn(B, 2 * I)[:, ::2].unsqueeze(0)
        with torch.no_grad():
            y_fast, fast = _run_fast(rnn, x, state, None, native)
            y_ref, ref = _run_fast(rnn, x, state, None, TorchPointwise)
        torch.testing.assert_close(y_fast, y_ref, atol=2e-5, rtol=1e-4)
        for a, b in zip(fast, ref):
            torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_float64(name):
    torch.manual_seed(2)
    rnn = build_rnn(name, 2, 3, num_layers=1).double()
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    resets = torch.tensor([[0, 0], [1, 0], [0, 0], [0, 1]], dtype=torch.bool)

    def fn(x, h0, *params):
        state = h0 if rnn.num_state_tensors == 1 else (h0, h0 * 0.5)
        y, s = rnn(x, state, resets=resets)
        return y, as_tuple(s)[0]

    assert torch.autograd.gradcheck(fn, (x, h0, *rnn.parameters()), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("module_class", [torch.nn.LSTM, torch.nn.GRU])
@pytest.mark.parametrize("batch_first", [True, False])
def test_from_torch_matches_torch(module_class, batch_first):
    torch.manual_seed(3)
    module = module_class(5, 12, num_layers=2, batch_first=batch_first)
    rnn = from_torch(module)
    x = torch.randn(4, 7, 5)
    h0 = torch.randn(2, 4 if batch_first else 7, 12)
    state = (h0, torch.randn_like(h0)) if module_class is torch.nn.LSTM else h0
    y_t, s_t = module(x, state)
    y_o, s_o = rnn(x, state)
    torch.testing.assert_close(y_o, y_t, atol=1e-5, rtol=1e-5)
    # the same structure: (h_n, c_n) for the LSTM, the tensor h_n for the GRU
    assert type(s_o) is type(s_t) and len(as_tuple(s_o)) == len(as_tuple(s_t))
    for a, b in zip(as_tuple(s_o), as_tuple(s_t)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # and the gradients of the inputs agree
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    module(xa)[0].pow(2).sum().backward()
    rnn(xb)[0].pow(2).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-5, rtol=1e-4)


def test_from_torch_rejects_other_modules():
    with pytest.raises(ValueError, match="nn.LSTM or torch.nn.GRU"):
        from_torch(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="bidirectional"):
        from_torch(torch.nn.LSTM(2, 3, bidirectional=True))


# ---------------------------------------------------------------- initialisation
@pytest.mark.parametrize("name", ["u-lstm", "ur-lstm", "u-gru", "ur-gru"])
def test_uniform_gate_init_is_uniform(name):
    torch.manual_seed(4)
    d = 1024
    rnn = build_rnn(name, 1, d)
    trace = rnn.gate_trace(torch.zeros(1, 1, 1))
    f = trace["f"].flatten().double().numpy()
    # zero input, zero state: f = sigmoid(b_f), which must be Uniform[1/d, 1-1/d]
    result = stats.kstest(f, stats.uniform(loc=1 / d, scale=1 - 2 / d).cdf)
    assert result.pvalue > 0.01, result
    assert f.min() >= 1 / d - 1e-6 and f.max() <= 1 - 1 / d + 1e-6
    # and a standard init is far from it
    plain = build_rnn(name.replace("u", "", 1) if name.startswith("ur") else name[2:], 1, d)
    f0 = plain.gate_trace(torch.zeros(1, 1, 1))["f"].flatten().double().numpy()
    assert stats.kstest(f0, stats.uniform(loc=1 / d, scale=1 - 2 / d).cdf).pvalue < 1e-6


def test_uniform_init_bias_range_and_small_width():
    rnn = build_rnn("ur-lstm", 1, 256)
    b = rnn.cells[0].bias[rnn.cells[0].block("f")]
    assert b.abs().max() <= math.log(255) + 1e-4  # logit(1 - 1/256) ~ 5.54
    assert b.abs().max() > 4.5
    with pytest.raises(ValueError, match="hidden_size >= 2"):
        build_rnn("ur-lstm", 1, 1)


@pytest.mark.parametrize("name", ["c-lstm", "c-gru"])
def test_chrono_timescales_within_bounds(name):
    torch.manual_seed(5)
    rnn = build_rnn(name, 1, 512, chrono_tmax=100)
    f = rnn.gate_trace(torch.zeros(1, 1, 1))["f"].flatten()
    timescale = 1.0 / (1.0 - f)
    assert timescale.min() >= 2 - 1e-3 and timescale.max() <= 100 + 1e-2
    assert timescale.max() > 80 and timescale.min() < 5  # spread over the range


# ---------------------------------------------------------------- refine gate algebra
def test_refine_gate_algebra():
    torch.manual_seed(6)
    rnn = build_rnn("r-lstm", 3, 64)
    trace = rnn.gate_trace(torch.randn(5, 2, 3))
    f, r, g = trace["f"], trace["r"], trace["g"]
    torch.testing.assert_close(g, 2 * r * f + (1 - 2 * r) * f**2)
    assert torch.all(g >= f**2 - 1e-6) and torch.all(g <= 1 - (1 - f) ** 2 + 1e-6)
    half = torch.full_like(f, 0.5)
    from memory_agents.cells.gates import effective_gate

    torch.testing.assert_close(effective_gate(f, half, "refine"), f)
    assert effective_gate(torch.tensor(0.9), torch.tensor(1.0), "refine") == pytest.approx(0.99)


@pytest.mark.parametrize("name", ["ur-lstm", "r-lstm", "ur-gru", "r-gru"])
def test_tied_refine_bias_gives_r_equal_one_minus_f_at_init(name):
    torch.manual_seed(7)
    rnn = build_rnn(name, 2, 128)
    trace = rnn.gate_trace(torch.zeros(1, 1, 2))
    torch.testing.assert_close(trace["r"], 1 - trace["f"], atol=1e-6, rtol=0)
    # independent: r starts the same but its bias is a separate parameter
    ind = build_rnn(name, 2, 128, refine_bias="independent")
    cell = ind.cells[0]
    with torch.no_grad():
        cell.bias[cell.block("f")] += 1.0
    t2 = ind.gate_trace(torch.zeros(1, 1, 2))
    assert not torch.allclose(t2["r"], 1 - t2["f"], atol=1e-3)


def test_master_gate_lies_between_f_squared_and_f():
    rnn = build_rnn("om-lstm", 3, 32)
    tr = rnn.gate_trace(torch.randn(6, 2, 3))
    assert torch.all(tr["g"] <= tr["f"] + 1e-6) and torch.all(tr["g"] >= tr["f"] ** 2 - 1e-6)
    # cumax: monotone over units, last unit 1
    assert torch.all(tr["f"].diff(dim=-1) >= -1e-6)
    torch.testing.assert_close(tr["f"][..., -1], torch.ones_like(tr["f"][..., -1]))


def test_ur_lstm_has_the_weights_of_an_lstm():
    ours = build_rnn("ur-lstm", 10, 32)
    torch_lstm = torch.nn.LSTM(10, 32)
    ours_w = sum(p.numel() for n, p in ours.named_parameters() if "weight" in n)
    torch_w = sum(p.numel() for n, p in torch_lstm.named_parameters() if "weight" in n)
    assert ours_w == torch_w == 4 * 32 * (10 + 32)
    assert ours.config.num_gates == 4 and ours.config.gate_names == ("f", "r", "o", "u")


# ---------------------------------------------------------------- API, errors, robustness
def test_available_cells_lists_every_preset():
    expected = {"lstm", "coupled-lstm", "c-lstm", "o-lstm", "u-lstm", "r-lstm", "ur-lstm", "om-lstm",
                "gru", "c-gru", "o-gru", "u-gru", "r-gru", "ur-gru"}
    assert expected <= set(available_cells())


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown cell 'ur-lsmt'.*ur-lstm"):
        build_rnn("ur-lsmt", 1, 8)
    with pytest.raises(ValueError, match="unknown cell option 'refine_gate_bias'"):
        build_rnn("ur-lstm", 1, 8, refine_gate_bias="tied")
    with pytest.raises(ValueError, match="auxiliary_gate='gated'.*refine"):
        build_rnn("lstm", 1, 8, auxiliary_gate="gated")
    with pytest.raises(ValueError, match="input_gate='separate' is only defined for the LSTM"):
        build_rnn("gru", 1, 8, input_gate="separate")
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        build_rnn("gru", 1, 0)
    with pytest.raises(ValueError, match="dropout"):
        build_rnn("gru", 1, 4, dropout=1.5)
    rnn = build_rnn("ur-lstm", 3, 8, batch_first=True)
    with pytest.raises(ValueError, match="2 features.*input_size=3"):
        rnn(torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match=r"\(B, T, input_size\)"):
        rnn(torch.zeros(5, 3))[0] if False else rnn(torch.zeros(1, 2, 5, 3))
    with pytest.raises(ValueError, match=r"state must be a tuple \(h, c\)"):
        rnn(torch.zeros(2, 5, 3), (torch.zeros(1, 2, 8),))
    with pytest.raises(ValueError, match="state must be a tensor h for the GRU family"):
        build_rnn("gru", 3, 8)(torch.zeros(5, 2, 3), (torch.zeros(1, 2, 8),))
    with pytest.raises(ValueError, match="num_layers, B, H"):
        rnn(torch.zeros(2, 5, 3), (torch.zeros(1, 3, 8), torch.zeros(1, 3, 8)))
    with pytest.raises(ValueError, match=r"resets must have shape \(B, T\)"):
        rnn(torch.zeros(2, 5, 3), resets=torch.zeros(5, 3, dtype=torch.bool))


def test_resets_equal_separate_episodes():
    torch.manual_seed(8)
    rnn = build_rnn("ur-gru", 2, 8, batch_first=True)
    x = torch.randn(1, 10, 2)
    resets = torch.zeros(1, 10, dtype=torch.bool)
    resets[0, 6] = True
    y, _ = rnn(x, resets=resets)
    y_second, _ = rnn(x[:, 6:])
    torch.testing.assert_close(y[:, 6:], y_second)


def test_state_carry_equals_whole_sequence():
    torch.manual_seed(9)
    rnn = build_rnn("ur-lstm", 2, 8, num_layers=2, batch_first=True)
    x = torch.randn(3, 12, 2)
    y, s = rnn(x)
    y1, s1 = rnn(x[:, :5])
    y2, s2 = rnn(x[:, 5:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)
    for a, b in zip(s2, s):
        torch.testing.assert_close(a, b)


def test_unbatched_input():
    rnn = build_rnn("gru", 2, 4)
    y, h = rnn(torch.randn(6, 2))
    assert y.shape == (6, 4) and h.shape == (1, 4)


def test_multilayer_dropout_like_torch():
    torch.manual_seed(10)
    rnn = build_rnn("ur-lstm", 2, 16, num_layers=3, dropout=0.5)
    x = torch.randn(5, 4, 2)
    rnn.train()
    a, _ = rnn(x)
    b, _ = rnn(x)
    assert not torch.allclose(a, b)  # dropout is active between layers in training
    rnn.eval()
    torch.testing.assert_close(rnn(x)[0], rnn(x)[0])


@pytest.mark.parametrize("name", ["ur-lstm", "ur-gru", "om-lstm"])
def test_state_dict_and_pickle_round_trip(name):
    torch.manual_seed(11)
    rnn = build_rnn(name, 3, 8)
    other = build_rnn(name, 3, 8)
    other.load_state_dict(rnn.state_dict())
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(other(x)[0], rnn(x)[0])
    buffer = io.BytesIO()
    torch.save(rnn, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(loaded(x)[0], rnn(x)[0])
    torch.testing.assert_close(pickle.loads(pickle.dumps(rnn))(x)[0], rnn(x)[0])
    torch.testing.assert_close(copy.deepcopy(rnn)(x)[0], rnn(x)[0])


def test_same_seed_same_weights_and_outputs():
    def make():
        torch.manual_seed(12)
        return build_rnn("ur-lstm", 3, 16)

    a, b = make(), make()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    x = torch.randn(5, 2, 3)
    assert torch.equal(a(x)[0], b(x)[0])


@pytest.mark.parametrize("name", ["ur-lstm", "ur-gru", "lstm", "o-lstm"])
def test_long_sequence_has_no_nan(name):
    torch.manual_seed(13)
    rnn = build_rnn(name, 1, 16)
    x = torch.randn(10_000, 2, 1, requires_grad=True)
    y, _ = rnn(x)
    y[-1].sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_cell_classes_are_single_steps():
    from memory_agents.cells import PRESETS

    cell = GatedLSTMCell(3, 5, PRESETS["ur-lstm"])
    h, c = cell(torch.randn(2, 3), (torch.zeros(2, 5), torch.zeros(2, 5)))
    assert h.shape == c.shape == (2, 5)
    h = GatedGRUCell(3, 5, PRESETS["ur-gru"])(torch.randn(2, 3), torch.zeros(2, 5))
    assert h.shape == (2, 5)
