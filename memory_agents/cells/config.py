"""Typed options of the gated-cell family and the named presets of the paper.

A preset is *data*: a name mapped to a :class:`CellConfig`. Every cell of the paper's
comparison (Gu et al. 2020, Table 1 naming: main-gate letter, then auxiliary-gate letter)
is one point in this option space, built by the same two implementations
(:class:`~memory_agents.cells.cells.GatedLSTMCell` and
:class:`~memory_agents.cells.cells.GatedGRUCell`).
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from dataclasses import dataclass
from typing import Literal, Optional

Family = Literal["lstm", "gru"]
MainGateInit = Literal["standard", "chrono", "uniform"]
MainGateActivation = Literal["sigmoid", "cumax"]
AuxiliaryGate = Literal["none", "refine", "master"]
InputGate = Literal["coupled", "separate"]
RefineBias = Literal["tied_negative", "independent"]

_CHOICES = {
    "family": ("lstm", "gru"),
    "main_gate_init": ("standard", "chrono", "uniform"),
    "main_gate_activation": ("sigmoid", "cumax"),
    "auxiliary_gate": ("none", "refine", "master"),
    "input_gate": ("coupled", "separate"),
    "refine_bias": ("tied_negative", "independent"),
}


@dataclass(frozen=True)
class CellConfig:
    """Options of one gated cell.

    Attributes:
        family: ``"lstm"`` (state ``(h, c)``) or ``"gru"`` (state ``h``).
        main_gate_init: bias initialisation of the main (forget / update) gate f:
            ``"standard"`` (PyTorch's U(-1/sqrt(H), 1/sqrt(H))), ``"chrono"``
            (Tallec & Ollivier 2018: ``b_f = log U[1, chrono_tmax - 1]``), or
            ``"uniform"`` (the paper's UGI: ``b_f = logit(U[1/H, 1 - 1/H])``).
        main_gate_activation: ``"sigmoid"`` or ``"cumax"`` (ordered neurons,
            ``cumsum(softmax(z))`` over the hidden units).
        auxiliary_gate: ``"none"``, ``"refine"`` (the paper's refine gate r,
            ``g = r(1-(1-f)^2) + (1-r)f^2``) or ``"master"`` (ON-LSTM-style master
            gate m, ``g = m f + (1-m) f^2``; see the cells' docstrings).
        input_gate: ``"coupled"`` (``i = 1 - g``, the paper's base cell) or
            ``"separate"`` (its own sigmoid gate, ``torch.nn.LSTM`` semantics;
            LSTM family only -- the GRU is coupled by construction).
        refine_bias: ``"tied_negative"`` (paper pseudocode as re-implemented:
            ``r = sigmoid(L_r - b_f)``, so r = 1 - f at initialisation) or
            ``"independent"`` (r has its own trainable bias, initialised to ``-b_f``).
        chrono_tmax: ``T_max`` of the chrono initialisation; ``None`` means the
            hidden size (the paper: "T_max proportional to hidden size" when untuned).
    """

    family: Family = "lstm"
    main_gate_init: MainGateInit = "standard"
    main_gate_activation: MainGateActivation = "sigmoid"
    auxiliary_gate: AuxiliaryGate = "none"
    input_gate: InputGate = "coupled"
    refine_bias: RefineBias = "tied_negative"
    chrono_tmax: Optional[float] = None

    def __post_init__(self) -> None:
        for field, choices in _CHOICES.items():
            value = getattr(self, field)
            if value not in choices:
                raise ValueError(f"{field}={value!r} is not valid; choose one of {list(choices)}")
        if self.family == "gru" and self.input_gate != "coupled":
            raise ValueError(
                "input_gate='separate' is only defined for the LSTM family; the GRU's update "
                "is coupled by construction (h = g*h_prev + (1-g)*n). Use input_gate='coupled'."
            )
        if self.main_gate_activation == "cumax" and self.main_gate_init != "standard":
            raise ValueError(
                f"main_gate_init={self.main_gate_init!r} needs main_gate_activation='sigmoid': "
                "the chrono and uniform initialisations set a sigmoid's bias; cumax gates use "
                "main_gate_init='standard'."
            )
        if self.chrono_tmax is not None:
            tmax = self.chrono_tmax
            if isinstance(tmax, bool) or not isinstance(tmax, numbers.Real) or not tmax > 2:
                raise ValueError(f"chrono_tmax={tmax!r} must be a number > 2 (or None)")
            if self.main_gate_init != "chrono":
                raise ValueError(f"chrono_tmax={tmax!r} applies only to main_gate_init='chrono', "
                                 f"not {self.main_gate_init!r}: drop it or choose a chrono preset (c-lstm, c-gru)")

    @property
    def gate_names(self) -> tuple[str, ...]:
        """Names of the gate blocks, in the order they are stacked in the weights.

        LSTM: ``f`` (main), ``r``/``m`` (auxiliary, if any), ``i`` (if separate), ``o``
        (output), ``u`` (candidate). GRU: ``f`` (update), ``r``/``m``, ``s`` (reset), ``n``
        (candidate). The candidate comes last so that every sigmoid block is one contiguous
        slice: the fast kernels apply one sigmoid to all of them.
        """
        aux = {"none": (), "refine": ("r",), "master": ("m",)}[self.auxiliary_gate]
        if self.family == "gru":
            return ("f", *aux, "s", "n")
        inp = ("i",) if self.input_gate == "separate" else ()
        return ("f", *aux, *inp, "o", "u")

    @property
    def num_gates(self) -> int:
        return len(self.gate_names)

    def replace(self, **changes) -> "CellConfig":
        """A copy with ``changes``; an option that the result would ignore is an error naming it."""
        valid = [f.name for f in dataclasses.fields(self) if f.name != "family"]
        for key in changes:
            if key not in valid:
                raise ValueError(f"unknown cell option {key!r}; valid options: {valid}")
        config = dataclasses.replace(self, **changes)
        # refine_bias has a default on every preset, so only an explicit one can be checked here
        # (chrono_tmax, default None, is checked in __post_init__).
        if "refine_bias" in changes and config.auxiliary_gate != "refine":
            raise ValueError(f"refine_bias={changes['refine_bias']!r} applies only to auxiliary_gate='refine', "
                             f"not {config.auxiliary_gate!r}: drop it or choose a refine preset (r-/ur-)")
        return config


def _preset(family: Family, **options) -> CellConfig:
    return CellConfig(family=family, **options)


# Name -> options. The paper's two-letter scheme: main gate (-: standard sigmoid, C: chrono,
# O: cumax, U: uniform init), then auxiliary gate (-: none, R: refine, M: master).
PRESETS: dict[str, CellConfig] = {
    # The everyday baseline: uncoupled LSTM with torch.nn.LSTM semantics.
    "lstm": _preset("lstm", input_gate="separate"),
    "coupled-lstm": _preset("lstm"),  # "--"
    "c-lstm": _preset("lstm", main_gate_init="chrono"),
    "o-lstm": _preset("lstm", main_gate_activation="cumax"),
    "u-lstm": _preset("lstm", main_gate_init="uniform"),
    "r-lstm": _preset("lstm", auxiliary_gate="refine"),
    "ur-lstm": _preset("lstm", main_gate_init="uniform", auxiliary_gate="refine"),
    "om-lstm": _preset("lstm", main_gate_activation="cumax", auxiliary_gate="master"),
    # torch.nn.GRU semantics.
    "gru": _preset("gru"),
    "c-gru": _preset("gru", main_gate_init="chrono"),
    "o-gru": _preset("gru", main_gate_activation="cumax"),
    "u-gru": _preset("gru", main_gate_init="uniform"),
    "r-gru": _preset("gru", auxiliary_gate="refine"),
    "ur-gru": _preset("gru", main_gate_init="uniform", auxiliary_gate="refine"),
    "om-gru": _preset("gru", main_gate_activation="cumax", auxiliary_gate="master"),
}


def available_cells() -> list[str]:
    """The preset names accepted by :func:`~memory_agents.cells.build_rnn`."""
    return list(PRESETS)


def check_cell_name(name: object, where: str = "cell") -> str:
    """Returns the preset name ``name`` (lower-cased), or raises ValueError naming the close ones.

    The one validator of cell names: `build_rnn`, `rllib train`, the match experiment and the
    supervised runs all call it, so every entry point rejects a typo the same way.
    """
    if isinstance(name, str) and name.lower() in PRESETS:
        return name.lower()
    close = difflib.get_close_matches(str(name).lower(), available_cells(), n=3, cutoff=0.5)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise ValueError(f"unknown {where} {name!r}{hint}; available cells: {', '.join(available_cells())}")


def resolve_config(name: str, **options) -> CellConfig:
    """The preset ``name`` with ``options`` overriding its fields."""
    return PRESETS[check_cell_name(name)].replace(**options)
