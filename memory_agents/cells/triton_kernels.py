"""Triton kernels for the cells on a GPU: the fused per-step update, forward and backward.

Each step of a layer is one cuBLAS GEMM (torch's ``h @ W_hh^T``, or ``dz @ W_hh`` in the backward)
and one Triton launch that does everything pointwise: the gate activations (sigmoid or cumax),
the refine/master gate algebra, the new state, and the reset mask. The input projection of all
T steps is one GEMM before the loop (on a GPU that (T, B, G*H) buffer is cheap), and the large
gradients (dW_hh, dW_ih, dx) stay the once-per-call GEMMs of
:class:`~memory_agents.cells.kernels.LSTMSequence` / ``GRUSequence``.

Resets: a reset zeroes the row's state before step t. Since ``keep`` is one number per row,
``(keep * h) @ W = keep * (h @ W)``: the kernel multiplies the GEMM's output and the carried
state by ``keep[t]`` itself, so a reset costs no launch and, unlike the PyTorch-ops loop's
per-call ``.tolist()``, nothing ever waits for the device.

Cumax (``o-``/``om-`` presets) is a softmax and a cumulative sum over the hidden units: one
program then covers a whole row of H units (one block of ``next_power_of_2(H)``). The other
gates are elementwise, and a program covers ``MAX_BLOCK_H`` units of one row.

Importing this module imports ``triton``; :mod:`memory_agents.cells.dispatch` does so only for
CUDA tensors and only when ``triton`` is installed (``pip install 'memory-agents[gpu]'``).
With ``TRITON_INTERPRET=1`` set when this module is imported and while its kernels run, the same
kernels run on CPU tensors in Triton's interpreter: that is how the tests check them on a machine
without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.nn import functional as F

from ._sequence_api import SequenceKernels

# Units of one row per program for the elementwise gates (cumax takes the whole row). 256 fills
# a program of 4 warps at 2 units per thread; the tests lower it to make partial blocks.
MAX_BLOCK_H = 256
_AUX = {"none": 0, "refine": 1, "master": 2}
_COMPUTE = {torch.float64: tl.float64}  # everything else computes in float32 (half types too)


# ------------------------------------------------------------------------------ elementwise
@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    # exp of a non-positive number only: no overflow for large |x|; NaN stays NaN.
    t = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - t) / (1.0 + t)
    return tl.where(x < 0, -y, y)


# Row reductions through tl.reduce / tl.associative_scan with combine functions of this module,
# not tl.sum / tl.max / tl.cumsum: those are jit functions of triton's own, decorated when triton
# was imported, so a copy of this module interpreted later (the tests) could not call them.
@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _max(a, b):
    return tl.maximum(a, b)


@triton.jit
def _main_gate(z, mask, CUMAX: tl.constexpr):
    """f from its pre-activation: sigmoid, or cumax = cumsum(softmax(z)) over the row."""
    if CUMAX:
        z = tl.where(mask, z, -float("inf"))
        e = tl.where(mask, tl.exp(z - tl.reduce(z, 0, _max)), 0.0)
        return tl.associative_scan(e / tl.reduce(e, 0, _add), 0, _add)
    else:
        return _sigmoid(z)


@triton.jit
def _effective_gate(f, a, AUX: tl.constexpr):
    """g from f and the auxiliary gate a (see memory_agents.cells.gates.effective_gate)."""
    if AUX == 1:  # refine: g = f + (2r - 1) f (1 - f)
        return f + (a * 2.0 - 1.0) * (f * (1.0 - f))
    elif AUX == 2:  # master: g = f + (m - 1) f (1 - f)
        return f + (a - 1.0) * (f * (1.0 - f))
    else:
        return f


@triton.jit
def _gate_backward(dg, f, a, act_row, cols, mask, COMPUTE: tl.constexpr, CUMAX: tl.constexpr,
                   AUX: tl.constexpr):
    """(dz_f, dz_aux) from dL/dg: the chain rule through effective_gate and the main gate."""
    ff = f * (1.0 - f)
    if AUX == 1:  # dg/df = 1 + (2r-1)(1-2f), dg/dr = 2 f (1-f)
        df = dg * (1.0 + (a * 2.0 - 1.0) * (1.0 - 2.0 * f))
        dz_aux = dg * ff * (2.0 * a * (1.0 - a))
    elif AUX == 2:  # dg/df = 1 - (1-m)(1-2f), dg/dm = f (1-f)
        df = dg * (1.0 - (1.0 - a) * (1.0 - 2.0 * f))
        dz_aux = dg * ff * (a * (1.0 - a))
    else:
        df = dg
        dz_aux = dg  # unused
    if CUMAX:
        # f = cumsum(s), s = softmax(z): ds_k = sum_{j>=k} df_j; dz = s (ds - <ds, s>). s is the
        # difference of neighbouring f, read back from the saved gates (written by an earlier launch).
        df = tl.where(mask, df, 0.0)
        f_left = tl.load(act_row + cols - 1, mask=mask & (cols > 0), other=0.0).to(COMPUTE)
        s = tl.where(mask, f - f_left, 0.0)
        # the suffix sum as total - prefix + own: associative_scan's reverse=True has had
        # miscompilation reports (triton-lang/triton#4362), and a forward scan is tl.cumsum's own
        ds = tl.reduce(df, 0, _add) - tl.associative_scan(df, 0, _add) + df
        dz_f = s * (ds - tl.reduce(ds * s, 0, _add))
    else:
        dz_f = df * ff
    return dz_f, dz_aux


@triton.jit
def _load(ptr, mask, COMPUTE: tl.constexpr):
    return tl.load(ptr, mask=mask, other=0.0).to(COMPUTE)


@triton.jit
def _pre(xw, hw, offsets, mask, k, COMPUTE: tl.constexpr):
    """A gate's pre-activation: the input projection plus keep * (h_{t-1} W_hh^T)."""
    return _load(xw + offsets, mask, COMPUTE) + k * _load(hw + offsets, mask, COMPUTE)


@triton.jit
def _store_gates(act, gates, H, f, a, last2, last1, mask, G: tl.constexpr, AUX: tl.constexpr):
    """A row block of the saved activations: f, the refine gate a (when there is one), and the
    last two gate blocks (LSTM: o, u; GRU: s, n), in the layout of CellConfig.gate_names."""
    out = act.dtype.element_ty
    tl.store(act + gates, f.to(out), mask=mask)
    if AUX != 0:
        tl.store(act + gates + H, a.to(out), mask=mask)
    tl.store(act + gates + (G - 2) * H, last2.to(out), mask=mask)
    tl.store(act + gates + (G - 1) * H, last1.to(out), mask=mask)


@triton.jit
def _load_gates(act, gates, H, mask, G: tl.constexpr, AUX: tl.constexpr, COMPUTE: tl.constexpr):
    """What _store_gates saved: (f, a, last two gate blocks); a is f where there is no refine gate."""
    f = _load(act + gates, mask, COMPUTE)
    if AUX != 0:
        a = _load(act + gates + H, mask, COMPUTE)
    else:
        a = f  # unused
    return f, a, _load(act + gates + (G - 2) * H, mask, COMPUTE), _load(act + gates + (G - 1) * H, mask, COMPUTE)


@triton.jit
def _incoming_grad(dh_in, dy, keep, keep_next, row, state, mask,
                   HAS_KEEP: tl.constexpr, HAS_DY: tl.constexpr, COMPUTE: tl.constexpr):
    """(dL/dh_t, keep_t): the gradient from step t+1 (cut by a reset before t+1) plus the
    output's own, and the mask of the state carried into step t."""
    d = _load(dh_in + state, mask, COMPUTE)
    if HAS_KEEP:
        d = d * tl.load(keep_next + row).to(COMPUTE)  # the reset before step t+1 cut this path
        k = tl.load(keep + row).to(COMPUTE)
    else:
        k = 1.0
    if HAS_DY:
        d += _load(dy + state, mask, COMPUTE)
    return d, k


# ------------------------------------------------------------------------------ LSTM family
# Gate blocks of a row of z / act: [f, aux?, i?, o, u] (see CellConfig.gate_names).
@triton.jit
def _lstm_forward_step(xw, hw, keep, c_prev, act, c_out, h_out, H,
                       G: tl.constexpr, HAS_KEEP: tl.constexpr, STORE_ACT: tl.constexpr,
                       CUMAX: tl.constexpr, AUX: tl.constexpr, COUPLED: tl.constexpr,
                       BLOCK_H: tl.constexpr, COMPUTE: tl.constexpr):
    """One step for one row block: z = xw + keep * hw, then the gates, c_t and h_t."""
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = cols < H
    gates = row * (G * H) + cols
    state = row * H + cols
    if HAS_KEEP:  # a reset zeroes h_{t-1} and c_{t-1} of this row: keep * (h W) = (keep * h) W
        k = tl.load(keep + row).to(COMPUTE)
    else:
        k = 1.0
    z_f = _pre(xw, hw, gates, mask, k, COMPUTE)
    z_o = _pre(xw, hw, gates + (G - 2) * H, mask, k, COMPUTE)
    z_u = _pre(xw, hw, gates + (G - 1) * H, mask, k, COMPUTE)
    c = k * _load(c_prev + state, mask, COMPUTE)
    f = _main_gate(z_f, mask, CUMAX)
    if AUX != 0:
        a = _sigmoid(_pre(xw, hw, gates + H, mask, k, COMPUTE))
    else:
        a = f  # unused
    g = _effective_gate(f, a, AUX)
    o = _sigmoid(z_o)
    u = _tanh(z_u)
    if COUPLED:  # c = g c + (1 - g) u
        c = u + g * (c - u)
    else:
        i = _sigmoid(_pre(xw, hw, gates + (G - 3) * H, mask, k, COMPUTE))
        c = i * u + g * c
        if STORE_ACT:
            tl.store(act + gates + (G - 3) * H, i.to(act.dtype.element_ty), mask=mask)
    h = o * _tanh(c)
    if STORE_ACT:
        _store_gates(act, gates, H, f, a, o, u, mask, G, AUX)
    tl.store(c_out + state, c.to(c_out.dtype.element_ty), mask=mask)
    tl.store(h_out + state, h.to(h_out.dtype.element_ty), mask=mask)


@triton.jit
def _lstm_backward_step(act, c, c_prev, keep, keep_next, dh_in, dy, dc, dz, H,
                        G: tl.constexpr, HAS_KEEP: tl.constexpr, HAS_DY: tl.constexpr,
                        CUMAX: tl.constexpr, AUX: tl.constexpr, COUPLED: tl.constexpr,
                        BLOCK_H: tl.constexpr, COMPUTE: tl.constexpr):
    """BPTT through step t for one row block. In: dh_in = dz_{t+1} @ W_hh (zero at t = T-1), the
    carried dc (in place), dy_t. Out: dz_t (all gate blocks) and dc_{t-1} (masked by keep[t])."""
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = cols < H
    gates = row * (G * H) + cols
    state = row * H + cols
    out = dz.dtype.element_ty
    dh, k = _incoming_grad(dh_in, dy, keep, keep_next, row, state, mask, HAS_KEEP, HAS_DY, COMPUTE)
    f, a, o, u = _load_gates(act, gates, H, mask, G, AUX, COMPUTE)
    tc = _tanh(_load(c + state, mask, COMPUTE))
    cp = k * _load(c_prev + state, mask, COMPUTE)
    tl.store(dz + gates + (G - 2) * H, (dh * tc * (o * (1.0 - o))).to(out), mask=mask)
    dct = _load(dc + state, mask, COMPUTE) + dh * o * (1.0 - tc * tc)
    g = _effective_gate(f, a, AUX)
    if COUPLED:
        dg = dct * (cp - u)
        du = dct * (1.0 - g)
    else:
        i = _load(act + gates + (G - 3) * H, mask, COMPUTE)
        dg = dct * cp
        du = dct * i
        tl.store(dz + gates + (G - 3) * H, (dct * u * (i * (1.0 - i))).to(out), mask=mask)
    tl.store(dz + gates + (G - 1) * H, (du * (1.0 - u * u)).to(out), mask=mask)
    dz_f, dz_aux = _gate_backward(dg, f, a, act + row * (G * H), cols, mask, COMPUTE, CUMAX, AUX)
    tl.store(dz + gates, dz_f.to(out), mask=mask)
    if AUX != 0:
        tl.store(dz + gates + H, dz_aux.to(out), mask=mask)
    tl.store(dc + state, (dct * g * k).to(dc.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------ GRU family
# Gate blocks: [f, aux?, s, n]; hw = h @ W_hh^T without bias, b_hn added here.
@triton.jit
def _gru_forward_step(xw, hw, keep, h_prev, b_hn, act, a_n, h_out, H,
                      G: tl.constexpr, HAS_KEEP: tl.constexpr, HAS_BIAS: tl.constexpr,
                      STORE_ACT: tl.constexpr, CUMAX: tl.constexpr, AUX: tl.constexpr,
                      BLOCK_H: tl.constexpr, COMPUTE: tl.constexpr):
    """One step for one row block: the gates from xw + keep * hw, the candidate
    n = tanh(xw_n + s (keep hw_n + b_hn)), and h_t = g h_{t-1} + (1 - g) n."""
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = cols < H
    gates = row * (G * H) + cols
    state = row * H + cols
    if HAS_KEEP:
        k = tl.load(keep + row).to(COMPUTE)
    else:
        k = 1.0
    f = _main_gate(_pre(xw, hw, gates, mask, k, COMPUTE), mask, CUMAX)
    if AUX != 0:
        a = _sigmoid(_pre(xw, hw, gates + H, mask, k, COMPUTE))
    else:
        a = f  # unused
    s = _sigmoid(_pre(xw, hw, gates + (G - 2) * H, mask, k, COMPUTE))
    an = k * _load(hw + gates + (G - 1) * H, mask, COMPUTE)
    if HAS_BIAS:
        an += _load(b_hn + cols, mask, COMPUTE)
    n = _tanh(_load(xw + gates + (G - 1) * H, mask, COMPUTE) + s * an)
    g = _effective_gate(f, a, AUX)
    h = n + g * (k * _load(h_prev + state, mask, COMPUTE) - n)
    if STORE_ACT:  # the backward (and gate traces) need the gates and the candidate's hidden half
        _store_gates(act, gates, H, f, a, s, n, mask, G, AUX)
        tl.store(a_n + state, an.to(a_n.dtype.element_ty), mask=mask)
    tl.store(h_out + state, h.to(h_out.dtype.element_ty), mask=mask)


@triton.jit
def _gru_backward_step(act, a_n, h_prev, keep, keep_next, dh, dy, da, dxn, H,
                       G: tl.constexpr, HAS_KEEP: tl.constexpr, HAS_DY: tl.constexpr,
                       CUMAX: tl.constexpr, AUX: tl.constexpr,
                       BLOCK_H: tl.constexpr, COMPUTE: tl.constexpr):
    """BPTT through step t for one row block. In: dh (in place) = the direct path dh_{t+1} g_{t+1}
    plus da_{t+1} @ W_hh (zero at t = T-1), dy_t. Out: da_t (grad of W_hh h + b_hh), dxn_t (grad
    of the candidate's input pre-activation) and, in dh, the direct path dh_t g_t."""
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = cols < H
    gates = row * (G * H) + cols
    state = row * H + cols
    out = da.dtype.element_ty
    d, k = _incoming_grad(dh, dy, keep, keep_next, row, state, mask, HAS_KEEP, HAS_DY, COMPUTE)
    f, a, s, n = _load_gates(act, gates, H, mask, G, AUX, COMPUTE)
    an = _load(a_n + state, mask, COMPUTE)
    g = _effective_gate(f, a, AUX)
    dg = d * (k * _load(h_prev + state, mask, COMPUTE) - n)
    d_xn = d * (1.0 - g) * (1.0 - n * n)
    tl.store(dxn + state, d_xn.to(dxn.dtype.element_ty), mask=mask)
    tl.store(da + gates + (G - 1) * H, (d_xn * s).to(out), mask=mask)
    tl.store(da + gates + (G - 2) * H, (d_xn * an * (s * (1.0 - s))).to(out), mask=mask)
    dz_f, dz_aux = _gate_backward(dg, f, a, act + row * (G * H), cols, mask, COMPUTE, CUMAX, AUX)
    tl.store(da + gates, dz_f.to(out), mask=mask)
    if AUX != 0:
        tl.store(da + gates + H, dz_aux.to(out), mask=mask)
    tl.store(dh + state, (d * g).to(dh.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------ host side
def _launch(spec, batch: int, dtype: torch.dtype) -> tuple[tuple, dict]:
    """(grid, the constexprs every kernel shares) for a layer of ``spec`` on ``batch`` rows."""
    H = spec.hidden_size
    block = triton.next_power_of_2(H)
    if not spec.cumax_main:  # cumax needs the whole row in one program
        block = min(block, MAX_BLOCK_H)
    meta = dict(G=spec.num_gates, CUMAX=spec.cumax_main, AUX=_AUX[spec.auxiliary_gate],
                BLOCK_H=block, COMPUTE=_COMPUTE.get(dtype, tl.float32),
                num_warps=max(1, min(8, block // 64)),
                # FMA contraction, as the C kernels' -ffp-contract=fast. Explicit: Triton 3.9 warns
                # when this is left to its default, which changes in 3.10.
                enable_fp_fusion=True)
    return (batch, triton.cdiv(H, block)), meta


def _steps(tensor, T: int) -> list:
    """Per-step views of a (T, ...) tensor, or T Nones for an absent one. The kernels index
    rows as ``row * width``, so each step must be contiguous (a batch_first mask is not)."""
    return list(tensor.contiguous().unbind(0)) if tensor is not None else [None] * T


class TritonKernels(SequenceKernels):
    """Whole-sequence loops with one GEMM and one Triton launch per step (forward and backward).

    Takes the place of :class:`~memory_agents.cells.kernels.TorchPointwise` in the loops of
    :mod:`memory_agents.cells.kernels`, with the interface of
    :class:`~memory_agents.cells._native.NativeKernels`: ``lstm_sequence`` / ``lstm_inference`` /
    ``lstm_sequence_backward`` and the GRU's three. Any device Triton can launch on (CUDA; CPU
    tensors in the interpreter); any floating dtype, computed in float32 (float64 in float64).
    """

    name = "triton"

    # -- LSTM family --------------------------------------------------------------------------
    @staticmethod
    def _lstm(spec, x, weight_ih, bias, h0, c0, weight_hh, keep, save: bool):
        T, B, _ = x.shape
        H, GH = spec.hidden_size, weight_hh.shape[0]
        grid, meta = _launch(spec, B, x.dtype)
        xw = F.linear(x, weight_ih, bias).contiguous()  # all T steps in one GEMM
        ys = x.new_empty(T, B, H)
        cs = x.new_empty(T if save else min(T, 2), B, H)  # without save: c_t in slot t % 2
        acts = x.new_empty(T if save else 1, B, GH)
        hw = x.new_empty(B, GH)
        h, c = h0.contiguous(), c0.contiguous()
        w_t = weight_hh.t()
        keeps = _steps(keep, T)
        for t, xw_t in enumerate(xw.unbind(0)):
            torch.mm(h, w_t, out=hw)
            c_out, h_out = cs[t if save else t % 2], ys[t]
            _lstm_forward_step[grid](xw_t, hw, keeps[t] if keep is not None else hw, c,
                                     acts[t if save else 0], c_out, h_out, H, HAS_KEEP=keep is not None,
                                     STORE_ACT=save, COUPLED=spec.coupled, **meta)
            h, c = h_out, c_out
        return ys, cs, acts

    @staticmethod
    def lstm_sequence_backward(spec, acts, cs, c0, keep, dys, weight_hh, dc_last):
        """BPTT: (dz_all, dh_0, dc_0); ``dys`` / ``dc_last`` may be None (zero)."""
        T, B, GH = acts.shape
        H = spec.hidden_size
        grid, meta = _launch(spec, B, acts.dtype)
        dz_all = torch.empty_like(acts)
        dh = acts.new_zeros(B, H)  # dz_{t+1} @ W_hh, before the mask of step t+1
        dc = dc_last.clone(memory_format=torch.contiguous_format) if dc_last is not None else acts.new_zeros(B, H)
        keeps, dy_steps = _steps(keep, T), _steps(dys, T)
        c0 = c0.contiguous()
        for t in range(T - 1, -1, -1):
            c_prev = cs[t - 1] if t else c0
            k = keeps[t] if keep is not None else dh
            _lstm_backward_step[grid](acts[t], cs[t], c_prev, k, keeps[t + 1] if keep is not None and t + 1 < T else k,
                                      dh, dy_steps[t] if dys is not None else dh, dc, dz_all[t], H,
                                      HAS_KEEP=keep is not None, HAS_DY=dys is not None, COUPLED=spec.coupled,
                                      **meta)
            torch.mm(dz_all[t], weight_hh, out=dh)
        if keep is not None:
            dh = dh * keep[0]
        return dz_all, dh, dc

    # -- GRU family ---------------------------------------------------------------------------
    @staticmethod
    def _gru(spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep, save: bool):
        T, B, _ = x.shape
        H, GH = spec.hidden_size, weight_hh.shape[0]
        grid, meta = _launch(spec, B, x.dtype)
        xw = F.linear(x, weight_ih, bias).contiguous()
        ys = x.new_empty(T, B, H)
        acts = x.new_empty(T, B, GH) if save else None
        a_ns = x.new_empty(T, B, H) if save else None
        hw = x.new_empty(B, GH)
        b_hn = hidden_bias[GH - H:].contiguous() if hidden_bias is not None else None  # zero elsewhere
        h = h0.contiguous()
        w_t = weight_hh.t()
        keeps = _steps(keep, T)
        for t, xw_t in enumerate(xw.unbind(0)):
            torch.mm(h, w_t, out=hw)
            _gru_forward_step[grid](xw_t, hw, keeps[t] if keep is not None else hw, h,
                                    b_hn if b_hn is not None else hw, acts[t] if save else hw,
                                    a_ns[t] if save else hw, ys[t], H, HAS_KEEP=keep is not None,
                                    HAS_BIAS=b_hn is not None, STORE_ACT=save, **meta)
            h = ys[t]
        return ys, acts, a_ns

    @staticmethod
    def gru_sequence_backward(spec, acts, a_ns, ys, h0, keep, dys, weight_hh):
        """BPTT: (da_all, dxn_all, dh_0)."""
        T, B, GH = acts.shape
        H = spec.hidden_size
        grid, meta = _launch(spec, B, acts.dtype)
        da_all, dxn_all = torch.empty_like(acts), torch.empty_like(ys)
        dh = acts.new_zeros(B, H)  # direct path + da_{t+1} @ W_hh, before the mask of step t+1
        keeps, dy_steps = _steps(keep, T), _steps(dys, T)
        h0 = h0.contiguous()
        for t in range(T - 1, -1, -1):
            k = keeps[t] if keep is not None else dh
            _gru_backward_step[grid](acts[t], a_ns[t], ys[t - 1] if t else h0, k,
                                     keeps[t + 1] if keep is not None and t + 1 < T else k, dh,
                                     dy_steps[t] if dys is not None else dh, da_all[t], dxn_all[t], H,
                                     HAS_KEEP=keep is not None, HAS_DY=dys is not None, **meta)
            dh.addmm_(da_all[t], weight_hh)
        if keep is not None:
            dh = dh * keep[0]
        return da_all, dxn_all, dh
