"""Fast sequence kernels: the time loop of one layer, with a hand-written backward pass.

Why a custom ``autograd.Function``: autograd through a Python loop would record ~20 nodes per
step; here the forward saves the gate activations and the backward runs its own loop (one GEMM
per step for ``dh``), then computes ``dW_hh``, ``dW_ih`` and ``dx`` with one GEMM each over all
steps.

Three backends run the loops, with the same equations as the step-by-step cells of
:mod:`memory_agents.cells.cells`:

- :class:`~memory_agents.cells._native.NativeKernels` (float32 CPU, when the C code could be
  built): the whole loop in C, input projection included, so no (T, B, G*H) buffer exists;
- :class:`~memory_agents.cells.triton_kernels.TritonKernels` (CUDA, with ``triton`` installed):
  the input projection of all T steps in one GEMM, then per step ``h @ W_hh`` and one fused
  Triton launch (forward and backward);
- :class:`TorchPointwise` (any dtype or device): the input projection of all T steps in one GEMM,
  then a Python loop of ``h @ W_hh`` plus the pointwise update in PyTorch ops.

Which one runs a call is decided in :mod:`memory_agents.cells.dispatch` alone; the loops take it
as their ``pw`` argument (and the backward reuses the forward's choice).

Resets: ``keep`` is a (T, B, 1) float mask, 0 where the state is zeroed before step t. It
multiplies the carried state, so episode boundaries never leave the fast path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .config import CellConfig
from .gates import cumax, effective_gate


@dataclass(frozen=True)
class KernelSpec:
    """What the kernels need to know about a layer (hashable, cheap to pass)."""

    hidden_size: int
    num_gates: int
    cumax_main: bool
    auxiliary_gate: str  # "none" | "refine" | "master"
    coupled: bool

    @classmethod
    def from_config(cls, config: CellConfig, hidden_size: int) -> "KernelSpec":
        return cls(
            hidden_size=hidden_size,
            num_gates=config.num_gates,
            cumax_main=config.main_gate_activation == "cumax",
            auxiliary_gate=config.auxiliary_gate,
            coupled=config.input_gate == "coupled",
        )

    @property
    def has_aux(self) -> bool:
        return self.auxiliary_gate != "none"


# ------------------------------------------------------------------------------ gate algebra
def _gate_backward(spec: KernelSpec, dg, f, aux, dz_f, dz_aux) -> None:
    """Write d(pre-activation) of the main and auxiliary gates given dL/dg."""
    ff = f * (1.0 - f)
    if spec.auxiliary_gate == "refine":
        # dg/df = 1 + (2r-1)(1-2f), dg/dr = 2 f (1-f)
        df = dg * (1.0 + (aux * 2.0 - 1.0) * (1.0 - 2.0 * f))
        torch.mul(dg * ff, 2.0 * aux * (1.0 - aux), out=dz_aux)
    elif spec.auxiliary_gate == "master":
        # dg/df = 1 - (1-m)(1-2f), dg/dm = f (1-f)
        df = dg * (1.0 - (1.0 - aux) * (1.0 - 2.0 * f))
        torch.mul(dg * ff, aux * (1.0 - aux), out=dz_aux)
    else:
        df = dg
    if spec.cumax_main:
        # f = cumsum(s), s = softmax(z): ds_k = sum_{j>=k} df_j; dz = s (ds - <ds, s>).
        s = torch.diff(f, dim=-1, prepend=torch.zeros_like(f[:, :1]))
        ds = torch.flip(torch.cumsum(torch.flip(df, [-1]), -1), [-1])
        torch.mul(s, ds - (ds * s).sum(-1, keepdim=True), out=dz_f)
    else:
        torch.mul(df, ff, out=dz_f)


class TorchPointwise:
    """The per-step pointwise updates in plain PyTorch ops (any dtype, any device)."""

    name = "torch"

    # -- LSTM family: act blocks [f, aux?, i?, o, u] ----------------------------------------
    @staticmethod
    def lstm_forward(spec: KernelSpec, z, act, c_prev, c_out, h_out) -> None:
        H, G = spec.hidden_size, spec.num_gates
        start = H if spec.cumax_main else 0
        torch.sigmoid(z[:, start : (G - 1) * H], out=act[:, start : (G - 1) * H])
        if spec.cumax_main:
            cumax(z[:, :H], out=act[:, :H])
        u = torch.tanh(z[:, (G - 1) * H :], out=act[:, (G - 1) * H :])
        f = act[:, :H]
        aux = act[:, H : 2 * H] if spec.has_aux else None
        g = effective_gate(f, aux, spec.auxiliary_gate)
        o = act[:, (G - 2) * H : (G - 1) * H]
        if spec.coupled:  # c = g c + (1 - g) u = u + g (c - u)
            torch.addcmul(u, g, c_prev - u, out=c_out)
        else:
            i = act[:, (G - 3) * H : (G - 2) * H]
            torch.addcmul(i * u, g, c_prev, out=c_out)
        torch.mul(o, torch.tanh(c_out), out=h_out)

    @staticmethod
    def lstm_backward(spec: KernelSpec, act, c, c_prev, dh, dc, dz) -> torch.Tensor:
        """Fill dz (B, G*H) from dL/dh_t and dL/dc_t (carried); return dL/dc_{t-1}."""
        H, G = spec.hidden_size, spec.num_gates
        f = act[:, :H]
        aux = act[:, H : 2 * H] if spec.has_aux else None
        o = act[:, (G - 2) * H : (G - 1) * H]
        u = act[:, (G - 1) * H :]
        tc = torch.tanh(c)
        torch.mul(dh * tc, o * (1.0 - o), out=dz[:, (G - 2) * H : (G - 1) * H])
        dc = torch.addcmul(dc, dh * o, 1.0 - tc * tc)
        g = effective_gate(f, aux, spec.auxiliary_gate)
        if spec.coupled:
            dg = dc * (c_prev - u)
            du = dc * (1.0 - g)
        else:
            i = act[:, (G - 3) * H : (G - 2) * H]
            dg = dc * c_prev
            du = dc * i
            torch.mul(dc * u, i * (1.0 - i), out=dz[:, (G - 3) * H : (G - 2) * H])
        torch.mul(du, 1.0 - u * u, out=dz[:, (G - 1) * H :])
        _gate_backward(spec, dg, f, aux, dz[:, :H], dz[:, H : 2 * H] if spec.has_aux else None)
        return dc * g

    # -- GRU family: act blocks [f, aux?, s, n] ---------------------------------------------
    @staticmethod
    def gru_forward(spec: KernelSpec, xw, a, h_prev, act, h_out) -> None:
        H, G = spec.hidden_size, spec.num_gates
        start = H if spec.cumax_main else 0
        zs = xw[:, : (G - 1) * H] + a[:, : (G - 1) * H]
        torch.sigmoid(zs[:, start:], out=act[:, start : (G - 1) * H])
        if spec.cumax_main:
            cumax(zs[:, :H], out=act[:, :H])
        s = act[:, (G - 2) * H : (G - 1) * H]
        n = torch.tanh(torch.addcmul(xw[:, (G - 1) * H :], s, a[:, (G - 1) * H :]), out=act[:, (G - 1) * H :])
        f = act[:, :H]
        g = effective_gate(f, act[:, H : 2 * H] if spec.has_aux else None, spec.auxiliary_gate)
        torch.addcmul(n, g, h_prev - n, out=h_out)  # h = g h_prev + (1 - g) n

    @staticmethod
    def gru_backward(spec: KernelSpec, act, a_n, h_prev, dh, da, dxw_n) -> torch.Tensor:
        """Fill da (B, G*H: grad of W_hh h + b_hh) and dxw_n (grad of the candidate's input
        pre-activation); the other blocks of d(xw) equal da's. Return the direct dL/dh_{t-1}."""
        H, G = spec.hidden_size, spec.num_gates
        f = act[:, :H]
        aux = act[:, H : 2 * H] if spec.has_aux else None
        s = act[:, (G - 2) * H : (G - 1) * H]
        n = act[:, (G - 1) * H :]
        g = effective_gate(f, aux, spec.auxiliary_gate)
        dg = dh * (h_prev - n)
        torch.mul(dh * (1.0 - g), 1.0 - n * n, out=dxw_n)
        torch.mul(dxw_n, s, out=da[:, (G - 1) * H :])
        torch.mul(dxw_n * a_n, s * (1.0 - s), out=da[:, (G - 2) * H : (G - 1) * H])
        _gate_backward(spec, dg, f, aux, da[:, :H], da[:, H : 2 * H] if spec.has_aux else None)
        return dh * g


def _step_masks(keep) -> list:
    """Per-step (B, 1) keep masks, None at steps where no sequence resets (most steps in RL
    batches), so those steps skip the two mask multiplies. Off the CPU every step keeps its mask:
    finding the steps without a reset would wait for the device (``.tolist()``)."""
    if keep is None:
        return _NO_MASKS
    if not keep.is_cpu:
        return keep.unbind(0)
    has_reset = (keep == 0).any(dim=2).any(dim=1).tolist()
    return [k if reset else None for k, reset in zip(keep.unbind(0), has_reset)]


class _NoMasks:
    def __getitem__(self, t):
        return None


_NO_MASKS = _NoMasks()


# ------------------------------------------------------------------------------ time loops
def lstm_loop(spec, x, weight_ih, bias, h0, c0, weight_hh, keep, pw):
    """Run the LSTM-family recurrence on the layer input x (T, B, I), keeping every step (for a
    backward pass or a gate trace). Returns (ys, cs, acts)."""
    if hasattr(pw, "lstm_sequence"):  # the whole loop in C, input projection included
        return pw.lstm_sequence(spec, x, weight_ih, bias, h0, c0, weight_hh, keep)
    xw = F.linear(x, weight_ih, bias)  # all T steps in one GEMM
    T, B, GH = xw.shape
    H = spec.hidden_size
    ys = xw.new_empty(T, B, H)
    cs = xw.new_empty(T, B, H)
    acts = xw.new_empty(T, B, GH)
    h, c = h0, c0
    w_t = weight_hh.t()
    keeps = _step_masks(keep)
    for t, x_t in enumerate(xw.unbind(0)):
        if keeps[t] is not None:
            h = h * keeps[t]
            c = c * keeps[t]
        z = torch.addmm(x_t, h, w_t)
        pw.lstm_forward(spec, z, acts[t], c, cs[t], ys[t])
        h, c = ys[t], cs[t]
    return ys, cs, acts


def gru_loop(spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep, pw):
    """Run the GRU-family recurrence on x (T, B, I), keeping every step. Returns (ys, acts, a_ns):
    a_ns is the candidate's hidden half ``(W_hh h + b_hh)_n``, which the backward needs."""
    if hasattr(pw, "gru_sequence"):
        return pw.gru_sequence(spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep)
    xw = F.linear(x, weight_ih, bias)
    T, B, GH = xw.shape
    H = spec.hidden_size
    ys = xw.new_empty(T, B, H)
    acts = xw.new_empty(T, B, GH)
    a_ns = xw.new_empty(T, B, H)
    h = h0
    w_t = weight_hh.t()
    keeps = _step_masks(keep)
    for t, x_t in enumerate(xw.unbind(0)):
        if keeps[t] is not None:
            h = h * keeps[t]
        a = torch.addmm(hidden_bias, h, w_t) if hidden_bias is not None else h @ w_t
        pw.gru_forward(spec, x_t, a, h, acts[t], ys[t])
        a_ns[t].copy_(a[:, (spec.num_gates - 1) * H :])
        h = ys[t]
    return ys, acts, a_ns


# Inference (no autograd): the input projection is computed a few steps at a time into one
# reused buffer. Measured: projecting all T steps at once into a fresh (T, B, G*H) tensor costs
# ~120 us per step at B=64, H=256, mostly page faults on the new memory; a chunk stays in cache.
INFERENCE_CHUNK = 16


def _projected_steps(x, weight_ih, bias, chunk: int = INFERENCE_CHUNK):
    """Yield ``x[t] @ W_ih^T + b`` for each step, ``chunk`` steps per GEMM, one reused buffer."""
    T, B, I = x.shape
    buffer = x.new_empty(min(chunk, T) * B, weight_ih.shape[0])
    flat = x.reshape(T * B, I)
    w_t = weight_ih.t()
    for t0 in range(0, T, chunk):
        n = min(chunk, T - t0)
        rows, out = flat[t0 * B : (t0 + n) * B], buffer[: n * B]
        if bias is not None:
            torch.addmm(bias, rows, w_t, out=out)
        else:
            torch.mm(rows, w_t, out=out)
        yield from out.view(n, B, weight_ih.shape[0]).unbind(0)


def _project_one(x_t, weight, bias):
    """``x_t @ weight^T + bias`` in one GEMM (bias may be None)."""
    return torch.addmm(bias, x_t, weight.t()) if bias is not None else x_t @ weight.t()


def lstm_inference(spec, x, weight_ih, bias, h0, c0, weight_hh, keep, pw):
    """The LSTM-family recurrence without saving anything for a backward pass: (ys, c_T)."""
    if hasattr(pw, "lstm_inference"):
        return pw.lstm_inference(spec, x, weight_ih, bias, h0, c0, weight_hh, keep)
    T, B, _ = x.shape
    H, GH = spec.hidden_size, weight_hh.shape[0]
    if T == 1:  # one env-runner step: no chunking machinery, just the two GEMMs and the kernel
        h, c = (h0, c0) if keep is None else (h0 * keep[0], c0 * keep[0])
        z = _project_one(x[0], weight_ih, bias)
        z.addmm_(h, weight_hh.t())
        ys, c_out = x.new_empty(1, B, H), x.new_empty(B, H)
        pw.lstm_forward(spec, z, torch.empty_like(z), c, c_out, ys[0])
        return ys, c_out
    ys = x.new_empty(T, B, H)
    c_buffers = (x.new_empty(B, H), x.new_empty(B, H))  # ping-pong: only c_{t-1} is needed
    z, act = x.new_empty(B, GH), x.new_empty(B, GH)
    h, c = h0, c0
    w_t = weight_hh.t()
    keeps = _step_masks(keep)
    for t, x_t in enumerate(_projected_steps(x, weight_ih, bias)):
        if keeps[t] is not None:
            h = h * keeps[t]
            c = c * keeps[t]
        torch.addmm(x_t, h, w_t, out=z)
        c_out = c_buffers[t % 2]
        pw.lstm_forward(spec, z, act, c, c_out, ys[t])
        h, c = ys[t], c_out
    return ys, c.clone()


def gru_inference(spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep, pw):
    """The GRU-family recurrence without saving anything for a backward pass: ys."""
    if hasattr(pw, "gru_inference"):
        return pw.gru_inference(spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep)
    T, B, _ = x.shape
    H, GH = spec.hidden_size, weight_hh.shape[0]
    if T == 1:  # one env-runner step (see lstm_inference)
        h = h0 if keep is None else h0 * keep[0]
        x_t = _project_one(x[0], weight_ih, bias)
        a = _project_one(h, weight_hh, hidden_bias)
        ys = x.new_empty(1, B, H)
        pw.gru_forward(spec, x_t, a, h, torch.empty_like(a), ys[0])
        return ys
    ys = x.new_empty(T, B, H)
    a, act = x.new_empty(B, GH), x.new_empty(B, GH)
    h = h0
    w_t = weight_hh.t()
    keeps = _step_masks(keep)
    for t, x_t in enumerate(_projected_steps(x, weight_ih, bias)):
        if keeps[t] is not None:
            h = h * keeps[t]
        if hidden_bias is not None:
            torch.addmm(hidden_bias, h, w_t, out=a)
        else:
            torch.mm(h, w_t, out=a)
        pw.gru_forward(spec, x_t, a, h, act, ys[t])
        h = ys[t]
    return ys


def _previous(states: torch.Tensor, first: torch.Tensor, keep) -> torch.Tensor:
    """(T, B, H) of the state entering each step: [first, states[:-1]], masked by resets."""
    prev = torch.cat([first.unsqueeze(0), states[:-1]], 0)
    return prev * keep if keep is not None else prev


def _lstm_backward_loop(spec, pw, acts, cs, c0, keep, dys, weight_hh, dc_last):
    """The LSTM BPTT loop in PyTorch ops: (dz_all, dh_0, dc_0)."""
    T = acts.shape[0]
    dz_all = torch.empty_like(acts)
    dh = torch.zeros_like(c0)
    dc = dc_last.clone() if dc_last is not None else torch.zeros_like(c0)
    c_prev_all = _previous(cs, c0, keep)
    keeps = _step_masks(keep)
    for t in range(T - 1, -1, -1):
        if dys is not None:
            dh = dh + dys[t]
        dc = pw.lstm_backward(spec, acts[t], cs[t], c_prev_all[t], dh, dc, dz_all[t])
        dh = dz_all[t] @ weight_hh
        if keeps[t] is not None:
            dh = dh * keeps[t]
            dc = dc * keeps[t]
    return dz_all, dh, dc


def _gru_backward_loop(spec, pw, acts, a_ns, h_prev_all, h0, keep, dys, weight_hh):
    """The GRU BPTT loop in PyTorch ops: (da_all, dxn_all, dh_0)."""
    da_all, dxn_all = torch.empty_like(acts), torch.empty_like(h_prev_all)
    dh = torch.zeros_like(h0)
    keeps = _step_masks(keep)
    for t in range(acts.shape[0] - 1, -1, -1):
        if dys is not None:
            dh = dh + dys[t]
        direct = pw.gru_backward(spec, acts[t], a_ns[t], h_prev_all[t], dh, da_all[t], dxn_all[t])
        dh = torch.addmm(direct, da_all[t], weight_hh)
        if keeps[t] is not None:
            dh = dh * keeps[t]
    return da_all, dxn_all, dh


def _input_grads(ctx, x, weight_ih, blocks):
    """Gradients of x, W_ih and b for the pre-activations ``x W_ih^T + b``, given as ``blocks``:
    [(rows of W_ih, their gradient (T, B, n))] in order, covering all G*H rows (one block for
    the LSTM; two for the GRU, whose candidate block has its own gradient)."""
    T, B, I = x.shape
    flat = [(rows, g.reshape(T * B, g.shape[-1])) for rows, g in blocks]
    join = (lambda parts: parts[0]) if len(flat) == 1 else torch.cat
    dx = d_weight_ih = d_bias = None
    if ctx.needs_input_grad[0]:
        dx = sum(g @ weight_ih[rows] for rows, g in flat).view(T, B, I)
    if ctx.needs_input_grad[1]:
        x_flat = x.reshape(T * B, I)
        d_weight_ih = join([g.t() @ x_flat for _, g in flat])
    if ctx.needs_input_grad[2]:
        d_bias = join([g.sum(0) for _, g in flat])
    return dx, d_weight_ih, d_bias


class LSTMSequence(torch.autograd.Function):
    """(x, W_ih, b, h0, c0, W_hh, keep) -> (ys, c_T) for the LSTM family, with a hand-written BPTT.

    The input projection is part of the function: the C loop computes x_t W_ih^T + b per step
    next to h W_hh^T (no (T, B, G*H) buffer), and the backward gives dx, dW_ih, db from dz."""

    @staticmethod
    def forward(ctx, x, weight_ih, bias, h0, c0, weight_hh, keep, spec, pointwise):
        ys, cs, acts = lstm_loop(spec, x, weight_ih, bias, h0, c0, weight_hh, keep, pointwise)
        ctx.spec, ctx.pointwise = spec, pointwise
        ctx.save_for_backward(x, weight_ih, h0, c0, weight_hh, keep, ys, cs, acts)
        return ys, cs[-1]

    @staticmethod
    def backward(ctx, dys, dc_last):
        x, weight_ih, h0, c0, weight_hh, keep, ys, cs, acts = ctx.saved_tensors
        spec, pw = ctx.spec, ctx.pointwise
        if hasattr(pw, "lstm_sequence_backward"):
            dz_all, dh, dc = pw.lstm_sequence_backward(spec, acts, cs, c0, keep, dys, weight_hh, dc_last)
        else:
            dz_all, dh, dc = _lstm_backward_loop(spec, pw, acts, cs, c0, keep, dys, weight_hh, dc_last)
        h_prev_all = _previous(ys, h0, keep)
        GH, H = acts.shape[-1], ys.shape[-1]
        d_weight_hh = dz_all.reshape(-1, GH).t() @ h_prev_all.reshape(-1, H)
        dx, d_weight_ih, d_bias = _input_grads(ctx, x, weight_ih, [(slice(None), dz_all)])
        return dx, d_weight_ih, d_bias, dh, dc, d_weight_hh, None, None, None


class GRUSequence(torch.autograd.Function):
    """(x, W_ih, b, h0, W_hh, b_hh, keep) -> ys for the GRU family, with a hand-written BPTT
    (input projection inside, as in :class:`LSTMSequence`)."""

    @staticmethod
    def forward(ctx, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep, spec, pointwise):
        ys, acts, a_ns = gru_loop(spec, x, weight_ih, bias, h0, weight_hh, hidden_bias, keep, pointwise)
        ctx.spec, ctx.pointwise = spec, pointwise
        ctx.has_hidden_bias = hidden_bias is not None
        ctx.save_for_backward(x, weight_ih, h0, weight_hh, keep, ys, acts, a_ns)
        return ys

    @staticmethod
    def backward(ctx, dys):
        x, weight_ih, h0, weight_hh, keep, ys, acts, a_ns = ctx.saved_tensors
        spec, pw = ctx.spec, ctx.pointwise
        T, B, GH = acts.shape
        H = spec.hidden_size
        h_prev_all = _previous(ys, h0, keep)
        if hasattr(pw, "gru_sequence_backward"):
            da_all, dxn_all, dh = pw.gru_sequence_backward(spec, acts, a_ns, ys, h0, keep, dys, weight_hh)
        else:
            da_all, dxn_all, dh = _gru_backward_loop(spec, pw, acts, a_ns, h_prev_all, h0, keep, dys, weight_hh)
        d_weight_hh = da_all.reshape(-1, GH).t() @ h_prev_all.reshape(-1, H)
        d_hidden_bias = da_all.sum((0, 1)) if ctx.has_hidden_bias else None
        # d(x W_ih^T + b) is da in the gate blocks and dxn in the candidate's: no concatenation.
        n0 = GH - H
        dx, d_weight_ih, d_bias = _input_grads(ctx, x, weight_ih,
                                               [(slice(0, n0), da_all[..., :n0]), (slice(n0, GH), dxn_all)])
        return dx, d_weight_ih, d_bias, dh, d_weight_hh, d_hidden_bias, None, None, None
