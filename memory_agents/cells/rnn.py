"""The sequence layer (a stack of gated cells run by the fast kernels) and its factories."""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch
from torch import _VF, nn
from torch.nn import functional as F

from . import _native, dispatch
from .cells import GatedGRUCell, GatedLSTMCell
from .config import CellConfig, available_cells, resolve_config
from .gates import effective_gate
from .kernels import (
    GRUSequence, KernelSpec, LSTMSequence, gru_inference, gru_loop, lstm_inference, lstm_loop,
)


def _describe(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


class GatedRNN(nn.Module):
    r"""A multi-layer gated RNN with the paper's gate variants, interface of ``torch.nn.LSTM``.

    Each layer is a :class:`~memory_agents.cells.cells.GatedLSTMCell` or
    :class:`~memory_agents.cells.cells.GatedGRUCell` (their docstrings give the equations). Each
    layer's recurrence, input projection included, runs in a fast kernel with a hand-written
    backward (:mod:`memory_agents.cells.kernels`): in C for float32 on the CPU, in Triton on CUDA
    (with ``triton`` installed), in PyTorch ops for every other dtype and device. On CUDA, cells
    with ``torch.nn.LSTM``'s or ``GRU``'s equations (``lstm``, ``gru``) run torch's fused RNN
    (cuDNN) for calls without ``resets``. :meth:`backend` says which;
    :mod:`~memory_agents.cells.dispatch` decides.

    Args:
        config: the cell's :class:`~memory_agents.cells.config.CellConfig`.
        input_size, hidden_size, num_layers, bias, batch_first, dropout: as in ``torch.nn.LSTM``
            (dropout is applied to the outputs of every layer but the last, in training mode).
        name: the preset name, for ``repr``.

    Inputs: ``input, state=None, resets=None``
        - **input**: (B, T, I) if ``batch_first`` else (T, B, I); (T, I) for one unbatched sequence.
        - **state**: ``(h_0, c_0)`` for the LSTM family (as ``torch.nn.LSTM``), the tensor ``h_0``
          for the GRU family (as ``torch.nn.GRU``), each (num_layers, B, H); zeros if omitted.
        - **resets**: bool (or integer 0/1), (B, T) if ``batch_first`` else (T, B): where true, the
          state of every layer is zeroed *before* step t (episode boundaries inside a sequence).

        Input, state and parameters must share one dtype and device; otherwise the same errors as
        ``torch.nn.LSTM`` (``ValueError`` for dtypes, ``RuntimeError`` for devices).

    Outputs: ``output, h_n`` (GRU family) or ``output, (h_n, c_n)`` (LSTM family)
        - **output**: (B, T, H) if ``batch_first`` else (T, B, H): the last layer's h at each step.
        - **h_n**, **c_n**: the final state of each layer, (num_layers, B, H).

    Examples::

        >>> rnn = build_rnn("ur-lstm", input_size=1, hidden_size=256, batch_first=True)
        >>> y, (h, c) = rnn(torch.randn(8, 100, 1))
        >>> y.shape, h.shape
        (torch.Size([8, 100, 256]), torch.Size([1, 8, 256]))
    """

    def __init__(
        self,
        config: CellConfig,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        name: Optional[str] = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        for flag, value in (("batch_first", batch_first), ("bias", bias)):
            if not isinstance(value, bool):
                raise ValueError(f"{flag} must be a bool, got {value!r}")
        self.config = config
        self.name = name or "custom"
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.dropout = float(dropout)
        cell_class = GatedLSTMCell if config.family == "lstm" else GatedGRUCell
        self.cells = nn.ModuleList(
            cell_class(input_size if layer == 0 else hidden_size, hidden_size, config, bias)
            for layer in range(num_layers)
        )
        if bias is False and config.auxiliary_gate == "refine" and config.refine_bias == "tied_negative":
            raise ValueError("refine_bias='tied_negative' needs bias=True (the tie is on the forget bias)")
        self._spec = KernelSpec.from_config(config, hidden_size)

    @property
    def is_lstm(self) -> bool:
        return self.config.family == "lstm"

    @property
    def num_state_tensors(self) -> int:
        """2 for the LSTM family ``(h, c)``, 1 for the GRU family (``h``)."""
        return 2 if self.is_lstm else 1

    def _operands(self) -> list[torch.Tensor]:
        """Every parameter, as ``parameters()`` but without its generator machinery: this runs on
        every call (an env runner's step is ~60 us)."""
        return [p for cell in self.cells for p in cell._parameters.values() if p is not None]

    def backend(self) -> str:
        """What this module runs on its current device and dtype: ``"native"`` (the C kernels),
        ``"triton"`` (the Triton kernels), ``"cudnn"`` (torch's fused RNN, for the ``lstm`` /
        ``gru`` equations on CUDA; their calls with ``resets`` run Triton) or ``"torch"`` (the
        PyTorch-ops loops); :meth:`backend_reason` says why."""
        operands = self._operands()
        if dispatch.uses_cudnn(self.config, None, operands[0]):
            return "cudnn"
        return dispatch.choose(*operands)[0]

    def backend_reason(self) -> str:
        """Why this module runs what :meth:`backend` says, or where its C kernels came from."""
        operands = self._operands()
        backend, reason = dispatch.choose(*operands)
        if dispatch.uses_cudnn(self.config, None, operands[0]):
            return ("torch's fused _VF.lstm / _VF.gru (cuDNN): this cell has torch.nn.LSTM's / GRU's equations; "
                    f"calls with resets run {backend}" + (f" ({reason})" if reason else ""))
        if backend == "triton":
            return "Triton kernels: one GEMM and one fused Triton launch per step"
        return reason or _native.backend_reason()

    def initial_state(self, batch_size: int, device=None, dtype=None):
        """Zeros in the structure ``forward`` takes: ``(h, c)`` (LSTM family) or ``h`` (GRU family)."""
        weight = self.cells[0].weight_hh
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_size, device=device or weight.device,
                            dtype=dtype or weight.dtype)
        return (zeros, zeros.clone()) if self.is_lstm else zeros

    # ------------------------------------------------------------------------------ checking
    def _state_tuple(self, state) -> tuple[torch.Tensor, ...]:
        """``state`` as a tuple of tensors; the structure must be ``torch.nn.LSTM``'s / ``GRU``'s."""
        if self.is_lstm:
            if isinstance(state, (tuple, list)) and len(state) == 2 and all(isinstance(s, torch.Tensor) for s in state):
                return tuple(state)
            raise ValueError(f"state must be a tuple (h, c) of tensors for the LSTM family, got {_describe(state)}")
        if isinstance(state, torch.Tensor):
            return (state,)
        raise ValueError(f"state must be a tensor h for the GRU family (as for torch.nn.GRU), got {_describe(state)}")

    def _public_state(self, state: tuple[torch.Tensor, ...]):
        return state if self.is_lstm else state[0]

    def _check_operands(self, input, state) -> None:
        """``torch.nn.LSTM``'s errors for an input, weights or state in different dtypes or devices."""
        for p in self._operands():
            if input.dtype != p.dtype:
                raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype ({p.dtype}). "
                                 f"Convert input: input.to({p.dtype}), or convert model: model.to({input.dtype})")
            if input.device != p.device:
                raise RuntimeError("Input and parameter tensors are not at the same device, found input tensor "
                                   f"at {input.device} and parameter tensor at {p.device}")
        for s in state:
            if s.device != input.device:
                raise RuntimeError("Input and hidden tensors are not at the same device, found input tensor "
                                   f"at {input.device} and hidden tensor at {s.device}")
            if s.dtype != input.dtype:
                raise ValueError(f"RNN hidden state dtype ({s.dtype}) does not match input dtype ({input.dtype}). "
                                 f"Convert the state: state.to({input.dtype})")

    def _prepare(self, input, state, resets):
        if not isinstance(input, torch.Tensor):
            raise ValueError(f"input must be a torch.Tensor, got {type(input).__name__}")
        unbatched = input.dim() == 2
        if input.dim() not in (2, 3):
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(f"input must have shape {layout} (or (T, input_size) unbatched), got {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input has {input.shape[-1]} features in its last dimension, expected input_size={self.input_size}")
        if not input.is_floating_point():
            raise ValueError(f"input must be a floating-point tensor, got {input.dtype}")
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        T, B = x.shape[0], x.shape[1]
        if T == 0:
            raise ValueError("input has no time steps (T = 0)")
        if state is None:
            state = self._state_tuple(self.initial_state(B, input.device, input.dtype))
        else:
            state = self._state_tuple(state)
            if unbatched:
                state = tuple(s.unsqueeze(1) for s in state)
            want = (self.num_layers, B, self.hidden_size)
            for s in state:
                if tuple(s.shape) != want:
                    raise ValueError(f"each state tensor must have shape (num_layers, B, H) = {want}, got {tuple(s.shape)}")
        self._check_operands(input, state)
        keep = None
        if resets is not None:
            resets = torch.as_tensor(resets, device=input.device)
            if resets.dtype != torch.bool:
                if resets.is_floating_point() or resets.is_complex() or bool(((resets != 0) & (resets != 1)).any()):
                    raise ValueError(f"resets must be a bool tensor (or integers 0/1), got {resets.dtype}"
                                     + ("" if resets.is_floating_point() or resets.is_complex() else " with other values"))
            if unbatched:
                resets = resets.unsqueeze(1)
            elif self.batch_first:
                resets = resets.transpose(0, 1) if resets.dim() == 2 else resets
            if tuple(resets.shape) != (T, B):
                layout = "(B, T)" if self.batch_first else "(T, B)"
                raise ValueError(f"resets must have shape {layout} matching the input, got {tuple(resets.shape)}")
            keep = (~resets.bool()).to(x.dtype).unsqueeze(-1)
        return x, state, keep, unbatched

    # ------------------------------------------------------------------------------ forward
    def _run_layer(self, layer: int, x, state, keep, save_gates: bool = False):
        cell = self.cells[layer]
        h0 = state[0][layer]
        c0 = state[1][layer] if self.is_lstm else None
        kernels = dispatch.select_kernels(x, h0, c0, keep, *cell.parameters())
        bias = cell.effective_bias()
        hidden_bias = None if self.is_lstm else cell.hidden_bias()
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(s.requires_grad for s in state) or any(p.requires_grad for p in cell.parameters())
        )
        if not needs_grad and not save_gates:  # inference: nothing saved for a backward pass
            with torch.no_grad():
                if self.is_lstm:
                    ys, c_last = lstm_inference(self._spec, x, cell.weight_ih, bias, h0, c0, cell.weight_hh, keep,
                                                kernels)
                    return ys, (ys[-1], c_last), None
                ys = gru_inference(self._spec, x, cell.weight_ih, bias, h0, cell.weight_hh, hidden_bias, keep,
                                   kernels)
                return ys, (ys[-1],), None
        # The input projection runs inside the loops (and their backward gives dx, dW_ih, db).
        if self.is_lstm:
            if needs_grad and not save_gates:
                ys, c_last = LSTMSequence.apply(x, cell.weight_ih, bias, h0, c0, cell.weight_hh, keep, self._spec,
                                                kernels)
                return ys, (ys[-1], c_last), None
            ys, cs, acts = lstm_loop(self._spec, x, cell.weight_ih, bias, h0, c0, cell.weight_hh, keep, kernels)
            return ys, (ys[-1], cs[-1]), acts
        if needs_grad and not save_gates:
            ys = GRUSequence.apply(x, cell.weight_ih, bias, h0, cell.weight_hh, hidden_bias, keep, self._spec, kernels)
            return ys, (ys[-1],), None
        ys, acts, _ = gru_loop(self._spec, x, cell.weight_ih, bias, h0, cell.weight_hh, hidden_bias, keep, kernels)
        return ys, (ys[-1],), acts

    def forward(self, input, state=None, resets=None):
        if resets is None and not torch.is_grad_enabled():
            out = self._one_step(input, state)
            if out is not None:
                return out
        x, state, keep, unbatched = self._prepare(input, state, resets)
        if dispatch.uses_cudnn(self.config, keep, x):
            x, new_state = self._run_cudnn(x, state)
        else:
            finals = []
            for layer in range(self.num_layers):
                x, final, _ = self._run_layer(layer, x, state, keep)
                finals.append(final)
                if self.dropout and self.training and layer < self.num_layers - 1:
                    x = F.dropout(x, self.dropout, training=True)
            new_state = tuple(torch.stack([f[k] for f in finals]) for k in range(self.num_state_tensors))
        if unbatched:
            return x.squeeze(1), self._public_state(tuple(s.squeeze(1) for s in new_state))
        return (x.transpose(0, 1) if self.batch_first else x), self._public_state(new_state)

    def _run_cudnn(self, x, state):
        """All layers in torch's fused RNN (cuDNN on CUDA): x (T, B, I) -> (ys, state tuple).

        Our blocks are torch's, reordered (see :func:`from_torch`); the reordered copies are made
        on every call, so autograd reaches the parameters, and torch's fused backward runs."""
        H, order = self.hidden_size, (_LSTM_FROM_TORCH if self.is_lstm else _GRU_FROM_TORCH)
        weights = []
        for cell in self.cells:
            weights += [_permute_blocks(cell.weight_ih, order, H), _permute_blocks(cell.weight_hh, order, H)]
            if cell.bias is not None:
                b_ih = _permute_blocks(cell.bias, order, H)
                if self.is_lstm:  # our one bias is torch's b_ih + b_hh
                    b_hh = torch.zeros_like(b_ih)
                else:  # the candidate's hidden bias sits inside the reset gate's product
                    b_hh = torch.cat([b_ih.new_zeros(2 * H), cell.bias_hn])
                weights += [b_ih, b_hh]
        has_bias = self.cells[0].bias is not None
        dropout = self.dropout if self.training else 0.0
        state = tuple(s.contiguous() for s in state)
        with warnings.catch_warnings():
            # cuDNN copies weights that are not in its flat buffer, and says so with advice for
            # torch.nn.LSTM (flatten_parameters) that does not apply: ours are reordered per call.
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            if self.is_lstm:
                ys, h_n, c_n = _VF.lstm(x, state, weights, has_bias, self.num_layers, dropout, self.training,
                                        False, False)
                return ys, (h_n, c_n)
            ys, h_n = _VF.gru(x, state[0], weights, has_bias, self.num_layers, dropout, self.training, False,
                              False)
            return ys, (h_n,)

    def _one_step(self, input, state):
        """One time step without autograd (what an RL env runner calls) through the one-step C
        kernels: no packing, no per-layer Python beyond one call. None when anything about the
        call is unusual; the general path then runs it (and raises the precise errors)."""
        if (not isinstance(input, torch.Tensor) or input.dim() != 3
                or input.shape[1 if self.batch_first else 0] != 1 or input.shape[2] != self.input_size
                or (self.dropout and self.training and self.num_layers > 1)):
            return None
        B, L, H = input.shape[0 if self.batch_first else 1], self.num_layers, self.hidden_size
        if state is None:
            state = tuple(input.new_zeros(L, B, H) for _ in range(self.num_state_tensors))
        else:
            try:
                state = self._state_tuple(state)
            except ValueError:
                return None
            if any(s.shape != (L, B, H) for s in state):
                return None
        if dispatch.choose(input, *state, *self._operands())[0] != "native":
            return None  # the general path checks the operands, warns if it must, and runs them
        state = tuple(s.contiguous() for s in state)
        x = input[:, 0] if self.batch_first else input[0]
        if x.stride(-1) != 1:
            x = x.contiguous()
        new_state = tuple(input.new_empty(L, B, H) for _ in range(self.num_state_tensors))
        kernels = _native.NativeKernels
        for layer, cell in enumerate(self.cells):
            if self.is_lstm:
                kernels.lstm_step(self._spec, cell, x, state[0][layer], state[1][layer], new_state[0][layer],
                                  new_state[1][layer])
            else:
                kernels.gru_step(self._spec, cell, x, state[0][layer], new_state[0][layer])
            x = new_state[0][layer]
        return x.unsqueeze(1 if self.batch_first else 0).clone(), self._public_state(new_state)

    @torch.no_grad()
    def gate_trace(self, input, state=None, resets=None, layer: int = -1) -> dict[str, torch.Tensor]:
        """Gate activations of one layer (default: the last) over a sequence.

        Returns a dict of tensors in the input's layout ((B, T, H) if ``batch_first``):
        ``"f"`` the main gate, ``"r"`` the refine gate or ``"m"`` the master gate where
        present, ``"g"`` the effective gate (equal to f without an auxiliary gate), and
        ``"i"`` the input gate where it is separate. Timescales are ``1 / (1 - g)``.
        """
        x, state, keep, unbatched = self._prepare(input, state, resets)
        layer = range(self.num_layers)[layer]
        for k in range(layer + 1):
            out, _, acts = self._run_layer(k, x, state, keep, save_gates=(k == layer))
            x = out
        H = self.hidden_size
        names = self.config.gate_names
        trace = {name: acts[..., j * H : (j + 1) * H] for j, name in enumerate(names) if name in ("f", "r", "m", "i")}
        trace["g"] = effective_gate(trace["f"], trace.get("r", trace.get("m")), self.config.auxiliary_gate)
        fix = (lambda t: t.squeeze(1)) if unbatched else ((lambda t: t.transpose(0, 1)) if self.batch_first else (lambda t: t))
        return {k: fix(v).contiguous() for k, v in trace.items()}

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"num_layers={self.num_layers}, batch_first={self.batch_first}, dropout={self.dropout}")


def build_rnn(
    name: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = False,
    dropout: float = 0.0,
    **options,
) -> GatedRNN:
    """Build the preset ``name`` (see :func:`available_cells`), with ``options`` overriding its
    :class:`~memory_agents.cells.config.CellConfig` fields (e.g. ``refine_bias="independent"``,
    ``chrono_tmax=784``).

    Raises ``ValueError`` naming the bad argument and the valid choices.
    """
    config = resolve_config(name, **options)
    return GatedRNN(config, input_size, hidden_size, num_layers, bias, batch_first, dropout, name=name.lower())


# torch block order -> ours: nn.LSTM stacks (i, f, g, o), we stack (f, i, o, u);
# nn.GRU stacks (r, z, n), we stack (f=z, s=r, n).
_LSTM_FROM_TORCH = (1, 0, 3, 2)
_GRU_FROM_TORCH = (1, 0, 2)


def _permute_blocks(tensor: torch.Tensor, order: Sequence[int], hidden_size: int) -> torch.Tensor:
    blocks = tensor.split(hidden_size, dim=0)
    return torch.cat([blocks[k] for k in order], 0)


def from_torch(module: nn.Module) -> GatedRNN:
    """The ``lstm`` / ``gru`` preset with ``module``'s weights: identical outputs and states.

    Accepts ``torch.nn.LSTM`` (without ``proj_size``) and ``torch.nn.GRU``, unidirectional.
    """
    if isinstance(module, nn.LSTM):
        preset, order = "lstm", _LSTM_FROM_TORCH
        if module.proj_size:
            raise ValueError("from_torch does not support nn.LSTM with proj_size > 0")
    elif isinstance(module, nn.GRU):
        preset, order = "gru", _GRU_FROM_TORCH
    else:
        raise ValueError(f"from_torch expects torch.nn.LSTM or torch.nn.GRU, got {type(module).__name__}")
    if module.bidirectional:
        raise ValueError("from_torch does not support bidirectional RNNs")
    rnn = build_rnn(preset, module.input_size, module.hidden_size, module.num_layers, module.bias,
                    module.batch_first, module.dropout)
    H = module.hidden_size
    ref = next(module.parameters())
    rnn.to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        for layer, cell in enumerate(rnn.cells):
            w_ih = getattr(module, f"weight_ih_l{layer}")
            w_hh = getattr(module, f"weight_hh_l{layer}")
            cell.weight_ih.copy_(_permute_blocks(w_ih, order, H))
            cell.weight_hh.copy_(_permute_blocks(w_hh, order, H))
            if not module.bias:
                continue
            b_ih = getattr(module, f"bias_ih_l{layer}")
            b_hh = getattr(module, f"bias_hh_l{layer}")
            if preset == "lstm":
                cell.bias.copy_(_permute_blocks(b_ih + b_hh, order, H))
            else:  # the candidate's hidden bias sits inside the reset gate's product
                summed = b_ih + torch.cat([b_hh[: 2 * H], torch.zeros_like(b_hh[2 * H :])])
                cell.bias.copy_(_permute_blocks(summed, order, H))
                cell.bias_hn.copy_(b_hh[2 * H :])
    return rnn


__all__ = ["GatedRNN", "build_rnn", "from_torch", "available_cells"]
