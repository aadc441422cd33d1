"""Gate activations, the effective-gate formulas, and the bias initialisations (paper §2-§3).

Pure functions of tensors, shared by the step-by-step cells and the fast sequence kernels,
so there is one definition of each formula.
"""

from __future__ import annotations

import math

import torch


def cumax(z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Ordered-neurons activation ``cumsum(softmax(z))`` over the last (unit) dimension."""
    return torch.cumsum(torch.softmax(z, dim=-1), dim=-1, out=out)


def main_gate(z: torch.Tensor, activation: str) -> torch.Tensor:
    return torch.sigmoid(z) if activation == "sigmoid" else cumax(z)


def effective_gate(f: torch.Tensor, aux: torch.Tensor | None, auxiliary_gate: str) -> torch.Tensor:
    """The gate g that keeps the state, from the main gate f and the auxiliary gate, if any:

    - ``"refine"`` (paper eq. for g): ``g = r(1-(1-f)^2) + (1-r)f^2 = f + (2r-1) f (1-f)``;
    - ``"master"`` (ON-LSTM's overlap rule with coupled master gates, our choice):
      ``g = m f + (1-m) f^2 = f - (1-m) f (1-f)``, so g lies in [f^2, f];
    - ``"none"``: ``g = f``.

    The one Python definition, used by the step-by-step cells, the PyTorch-ops kernels and the
    gate traces (the C kernels' copy is held to it by the parity tests).
    """
    if auxiliary_gate == "refine":
        return torch.addcmul(f, aux * 2.0 - 1.0, f * (1.0 - f))
    if auxiliary_gate == "master":
        return torch.addcmul(f, aux - 1.0, f * (1.0 - f))
    return f


# ----------------------------------------------------------------------------- initialisation
def uniform_gate_bias(size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """UGI (paper §1): ``b = logit(u)``, ``u ~ U[1/d, 1-1/d]`` so sigmoid(b) is uniform there."""
    if size < 2:
        raise ValueError(
            f"main_gate_init='uniform' needs hidden_size >= 2 (got {size}): the interval "
            "[1/d, 1-1/d] is empty for d = 1"
        )
    low, high = 1.0 / size, 1.0 - 1.0 / size
    u = torch.rand(size, generator=generator, dtype=torch.float64) * (high - low) + low
    return torch.log(u / (1.0 - u)).float()


def chrono_gate_bias(size: int, tmax: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Chrono init (Tallec & Ollivier 2018): ``b = log U[1, tmax-1]``, timescales 1/(1-f) in [2, tmax]."""
    if not tmax > 2:
        raise ValueError(f"chrono_tmax must be > 2, got {tmax}")
    u = torch.rand(size, generator=generator, dtype=torch.float64) * (tmax - 2.0) + 1.0
    return torch.log(u).float()


def standard_bound(hidden_size: int) -> float:
    """PyTorch's RNN init bound: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
    return 1.0 / math.sqrt(hidden_size)
