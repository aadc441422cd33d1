"""Single-step gated cells: one parametrised class per family, in the style of ``torch.nn.LSTMCell``.

These own the parameters and define the equations step by step. The sequence layer
(:class:`~memory_agents.cells.rnn.GatedRNN`) runs the same equations through the fast kernels
in :mod:`memory_agents.cells.kernels`; the parity tests hold the two equal.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import CellConfig
from .gates import chrono_gate_bias, effective_gate, main_gate, standard_bound, uniform_gate_bias


class _GatedCellBase(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, config: CellConfig, bias: bool = True) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if config.main_gate_init == "uniform" and hidden_size < 2:
            raise ValueError("main_gate_init='uniform' needs hidden_size >= 2 ([1/d, 1-1/d] is empty for d=1)")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.config = config
        self.use_bias = bias
        # (refine rows, forget rows) of the tied bias b_r - b_f; effective_bias runs every call.
        self._tie_blocks = (self.block("r"), self.block("f")) if self.tied_refine_bias else None
        gates = config.num_gates
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden_size, hidden_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(gates * hidden_size))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    # -- layout helpers -------------------------------------------------------------------------
    def block(self, name: str) -> slice:
        """Rows of the stacked weights that belong to gate ``name`` (see ``CellConfig.gate_names``)."""
        k = self.config.gate_names.index(name)
        return slice(k * self.hidden_size, (k + 1) * self.hidden_size)

    @property
    def aux_name(self) -> str | None:
        return {"none": None, "refine": "r", "master": "m"}[self.config.auxiliary_gate]

    @property
    def tied_refine_bias(self) -> bool:
        return self.config.auxiliary_gate == "refine" and self.config.refine_bias == "tied_negative"

    def reset_parameters(self) -> None:
        bound = standard_bound(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)
        if self.bias is None:
            return
        cfg, H = self.config, self.hidden_size
        with torch.no_grad():
            if cfg.main_gate_init == "uniform":
                self.bias[self.block("f")] = uniform_gate_bias(H)
            elif cfg.main_gate_init == "chrono":
                b_f = chrono_gate_bias(H, cfg.chrono_tmax or float(max(H, 3)))
                self.bias[self.block("f")] = b_f
                if "i" in cfg.gate_names:  # Tallec & Ollivier: b_i = -b_f
                    self.bias[self.block("i")] = -b_f
            if self.tied_refine_bias:
                # r = sigmoid(L_r - b_f): the r block keeps only a free offset, zero at init,
                # so that r = 1 - f exactly at initialisation (paper §3).
                self.bias[self.block("r")] = 0.0
            elif cfg.auxiliary_gate == "refine":
                self.bias[self.block("r")] = -self.bias[self.block("f")]

    def effective_bias(self) -> torch.Tensor | None:
        """The bias added to the input projection, with the refine tie ``b_r - b_f`` applied."""
        if self.bias is None:
            if self.tied_refine_bias:
                raise ValueError("refine_bias='tied_negative' needs bias=True")
            return None
        if not self.tied_refine_bias:
            return self.bias
        r, f = self._tie_blocks
        bias = self.bias.clone()
        bias[r] -= self.bias[f]
        return bias

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"{self.input_size}, {self.hidden_size}, family={c.family}, main_gate_init={c.main_gate_init}, "
            f"main_gate_activation={c.main_gate_activation}, auxiliary_gate={c.auxiliary_gate}, "
            f"input_gate={c.input_gate}, refine_bias={c.refine_bias}"
        )


class GatedLSTMCell(_GatedCellBase):
    r"""One step of the LSTM-family cell with the paper's gate options.

    .. math::
        \begin{array}{ll}
        z = W_{ih} x_t + b + W_{hh} h_{t-1} \quad\text{(stacked blocks } f, [r|m], [i], u, o) \\
        f = \sigma(z_f) \text{ or } \mathrm{cumax}(z_f) \\
        g = f \text{ (no auxiliary gate)},\quad
            g = 2 r f + (1 - 2r) f^2,\ r = \sigma(z_r - b_f) \text{ (refine, tied bias)},\quad
            g = m f + (1-m) f^2,\ m = \sigma(z_m) \text{ (master)} \\
        i = 1 - g \text{ (coupled) or } \sigma(z_i) \text{ (separate)} \\
        u = \tanh(z_u),\quad o = \sigma(z_o) \\
        c_t = g \odot c_{t-1} + i \odot u \\
        h_t = o \odot \tanh(c_t)
        \end{array}

    The UR-LSTM (``ur-lstm``) is sigmoid f with UGI bias, refine gate, coupled input: four gate
    blocks, the same weight count as ``torch.nn.LSTM``. With ``input_gate="separate"`` and no
    auxiliary gate this is exactly ``torch.nn.LSTM``'s cell (its ``i, f, g, o`` are our
    ``i, f, u, o``).

    Args:
        input_size: features of ``x_t``.
        hidden_size: units H.
        config: a :class:`~memory_agents.cells.config.CellConfig` with ``family="lstm"``.
        bias: learn a bias (needed for UGI/chrono and the tied refine bias).

    Inputs: ``x`` of shape (B, input_size); ``state = (h, c)``, each (B, H).
    Outputs: ``(h_t, c_t)``, each (B, H).

    Attributes:
        weight_ih: (G*H, input_size), U(-1/sqrt(H), 1/sqrt(H)); G = ``config.num_gates``.
        weight_hh: (G*H, H), same init.
        bias: (G*H,), same init except the main gate (UGI / chrono) and the refine block.
    """

    def gates(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        h, c = state
        z = nn.functional.linear(x, self.weight_ih, self.effective_bias()) + h @ self.weight_hh.t()
        blocks = dict(zip(self.config.gate_names, z.split(self.hidden_size, dim=-1)))
        out = {"f": main_gate(blocks["f"], self.config.main_gate_activation)}
        aux = self.aux_name
        if aux:
            out[aux] = torch.sigmoid(blocks[aux])
        out["g"] = effective_gate(out["f"], out.get(aux) if aux else None, self.config.auxiliary_gate)
        out["i"] = torch.sigmoid(blocks["i"]) if "i" in blocks else 1.0 - out["g"]
        out["u"] = torch.tanh(blocks["u"])
        out["o"] = torch.sigmoid(blocks["o"])
        out["c"] = out["g"] * c + out["i"] * out["u"]
        out["h"] = out["o"] * torch.tanh(out["c"])
        return out

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.gates(x, state)
        return out["h"], out["c"]


class GatedGRUCell(_GatedCellBase):
    r"""One step of the GRU-family cell with the paper's gate options.

    .. math::
        \begin{array}{ll}
        z = W_{ih} x_t + b, \quad a = W_{hh} h_{t-1} \quad\text{(blocks } f, [r|m], s, n) \\
        f = \sigma(z_f + a_f) \text{ or } \mathrm{cumax}(z_f + a_f) \quad\text{(update gate: how much to keep)} \\
        g = f,\ \ 2 r f + (1 - 2r) f^2 \text{ (refine)},\ \ m f + (1-m) f^2 \text{ (master)} \\
        s = \sigma(z_s + a_s) \quad\text{(reset gate)} \\
        n = \tanh(z_n + s \odot (a_n + b_{hn})) \\
        h_t = g \odot h_{t-1} + (1 - g) \odot n
        \end{array}

    With no auxiliary gate this is ``torch.nn.GRU``'s cell (its ``r, z, n`` are our ``s, f, n``).
    The UR-GRU applies UGI to f's bias and adds the refine gate with the tied bias (paper §4).

    Inputs: ``x`` (B, input_size); ``h`` (B, H), as ``torch.nn.GRUCell``. Outputs: ``h_t`` (B, H).

    Attributes:
        weight_ih, weight_hh, bias: as in :class:`GatedLSTMCell`.
        bias_hn: (H,), the hidden-side bias of the candidate, inside the reset gate's product.
    """

    def __init__(self, input_size: int, hidden_size: int, config: CellConfig, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size, config, bias)
        if bias:
            self.bias_hn = nn.Parameter(torch.empty(hidden_size))
            bound = standard_bound(hidden_size)
            nn.init.uniform_(self.bias_hn, -bound, bound)
        else:
            self.register_parameter("bias_hn", None)

    def hidden_bias(self) -> torch.Tensor | None:
        """The bias of ``W_hh h``: zero except ``b_hn`` in the candidate block."""
        if self.bias_hn is None:
            return None
        return nn.functional.pad(self.bias_hn, ((self.config.num_gates - 1) * self.hidden_size, 0))

    def gates(self, x: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
        H = self.hidden_size
        zx = nn.functional.linear(x, self.weight_ih, self.effective_bias())
        zh = nn.functional.linear(h, self.weight_hh, self.hidden_bias())
        names = self.config.gate_names
        bx = dict(zip(names, zx.split(H, dim=-1)))
        bh = dict(zip(names, zh.split(H, dim=-1)))
        out = {"f": main_gate(bx["f"] + bh["f"], self.config.main_gate_activation)}
        aux = self.aux_name
        if aux:
            out[aux] = torch.sigmoid(bx[aux] + bh[aux])
        out["g"] = effective_gate(out["f"], out.get(aux) if aux else None, self.config.auxiliary_gate)
        out["s"] = torch.sigmoid(bx["s"] + bh["s"])
        out["n"] = torch.tanh(bx["n"] + out["s"] * bh["n"])
        out["h"] = out["g"] * h + (1.0 - out["g"]) * out["n"]
        return out

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.gates(x, h)["h"]
