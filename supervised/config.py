"""The typed arguments of one supervised run, and the per-task defaults they resolve to.

Every option of ``python -m supervised`` is a field of :class:`TrainConfig`; the command line,
the YAML files in ``configs/supervised/`` and the Ray Tune sweep all build one. Fields left at
``None`` mean "the task's default"; :func:`resolve` fills them in one visible place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

TASKS = ("copy", "adding", "smnist", "pmnist", "scifar", "wikitext103", "digits")
LR_SCHEDULES = ("none", "cosine", "step")


class ConfigError(ValueError):
    """A bad option value or combination: the CLI prints it as one line and exits non-zero."""


def _arg(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    task: str = _arg("copy", f"the experiment: one of {', '.join(TASKS)}")
    cell: str = _arg("ur-lstm", "recurrent cell preset, any name of memory_agents.cells.available_cells()")
    hidden_size: int = _arg(256, "hidden units per layer (paper: 256)")
    num_layers: int = _arg(1, "stacked recurrent layers (paper: 1)")
    steps: int | None = _arg(None, "optimizer steps; overrides --epochs")
    epochs: float | None = _arg(None, "passes over the training data (task default; paper: 100 for images)")
    batch_size: int = _arg(64, "sequences per optimizer step (paper: 64)")
    lr: float = _arg(1e-3, "Adam learning rate (paper: 1e-3)")
    lr_schedule: str = _arg("none", f"learning-rate schedule: {', '.join(LR_SCHEDULES)}")
    lr_decay_every: int = _arg(10000, "'step' schedule: steps between decays")
    lr_decay_factor: float = _arg(0.5, "'step' schedule: multiply the lr by this at each decay")
    grad_clip: float = _arg(1.0, "clip the global gradient norm to this (0 disables) [ours]")
    seed: int = _arg(1, "seeds parameters, data order and synthetic batches")
    data_dir: str | None = _arg(None, "folder holding the data set files (file-based tasks; no default)")
    out: str | None = _arg(None, "run directory: TensorBoard events, checkpoint, metrics.json (default runs/<task>-<cell>-s<seed>)")
    resume: bool = _arg(False, "continue from <out>/checkpoint.pt with the same data order")
    checkpoint_every: int = _arg(500, "write the checkpoint every this many steps (and at the end)")
    eval_every: int = _arg(1000, "evaluate on the validation split every this many steps (and at the end)")
    eval_batches: int | None = _arg(None, "cap the periodic validation at this many batches (default: whole split; the final evaluation is always whole)")
    log_every: int = _arg(50, "TensorBoard scalars and history every this many steps")
    gate_histograms_every: int = _arg(500, "TensorBoard gate histograms (f, g, 1/(1-g)) every this many steps (0 disables)")
    seq_len: int | None = _arg(None, "copy: blanks N during training (paper 500); adding: length T (paper 200)")
    eval_seq_len: int | None = _arg(None, "copy/adding: N or T at evaluation (paper 1000)")
    eval_size: int = _arg(1000, "copy/adding: sequences per evaluation split")
    permutation_seed: int = _arg(0, "pmnist: seed of the one fixed pixel permutation (saved with the run)")
    val_size: int | None = _arg(None, "image tasks: examples carved from the end of train for validation (task default)")
    bptt: int = _arg(70, "wikitext103: truncated-BPTT length; the state is carried across batches")
    eval_batch_size: int | None = _arg(None, "sequences per evaluation batch (default: --batch-size; 10 for wikitext103)")
    embedding_size: int | None = _arg(None, "wikitext103: word embedding width (default: --hidden-size)")
    threads: int = _arg(1, "torch CPU threads")
    progress: bool = _arg(True, "show the tqdm progress bar")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

# What `None` means per task; the comments say where a number comes from.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # Arjovsky et al. 2016 definitions; paper §6: train N=500, evaluate N=1000. Steps are [ours].
    "copy": {"seq_len": 500, "eval_seq_len": 1000, "steps": 20000},
    "adding": {"seq_len": 200, "eval_seq_len": 1000, "steps": 20000},
    # Paper §6: 100 epochs, standard splits; 5000 validation images carved from train [ours].
    "smnist": {"epochs": 100, "val_size": 5000},
    "pmnist": {"epochs": 100, "val_size": 5000},
    "scifar": {"epochs": 100, "val_size": 5000},
    "wikitext103": {"epochs": 10, "eval_batch_size": 10},
    # sklearn's 1797 8x8 digits: last 360 are the test split, 10% of the rest validation [ours].
    "digits": {"epochs": 100, "val_size": 143},
}


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill task defaults and check values; raises ConfigError with a message for the user."""
    if cfg.task not in TASKS:
        raise ConfigError(f"unknown task {cfg.task!r}; choose one of: {', '.join(TASKS)}")
    cfg = dataclasses.replace(cfg)
    defaults = TASK_DEFAULTS[cfg.task]
    for name in ("seq_len", "eval_seq_len", "val_size", "eval_batch_size"):
        if getattr(cfg, name) is None and name in defaults:
            setattr(cfg, name, defaults[name])
    if cfg.steps is None and cfg.epochs is None:
        if "steps" in defaults:
            cfg.steps = defaults["steps"]
        else:
            cfg.epochs = defaults["epochs"]
    if cfg.eval_batch_size is None:
        cfg.eval_batch_size = cfg.batch_size
    if cfg.embedding_size is None:
        cfg.embedding_size = cfg.hidden_size
    if cfg.out is None:
        cfg.out = f"runs/{cfg.task}-{cfg.cell}-s{cfg.seed}"

    positive = ["hidden_size", "num_layers", "batch_size", "checkpoint_every", "eval_every",
                "log_every", "eval_size", "bptt", "eval_batch_size", "embedding_size", "threads"]
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    for name in ("steps", "eval_batches", "seq_len", "eval_seq_len"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if cfg.epochs is not None and cfg.epochs <= 0:
        raise ConfigError(f"--epochs must be positive, got {cfg.epochs}")
    if not cfg.lr > 0:
        raise ConfigError(f"--lr must be positive, got {cfg.lr}")
    if cfg.grad_clip < 0:
        raise ConfigError(f"--grad-clip must be >= 0, got {cfg.grad_clip}")
    if cfg.gate_histograms_every < 0:
        raise ConfigError(f"--gate-histograms-every must be >= 0, got {cfg.gate_histograms_every}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"unknown --lr-schedule {cfg.lr_schedule!r}; choose one of: {', '.join(LR_SCHEDULES)}")
    if cfg.val_size is not None and cfg.val_size < 0:
        raise ConfigError(f"--val-size must be >= 0, got {cfg.val_size}")
    if cfg.task == "adding" and min(cfg.seq_len, cfg.eval_seq_len) < 2:
        raise ConfigError("adding: --seq-len and --eval-seq-len must be at least 2 (one marker per half)")
    if cfg.task in ("smnist", "pmnist", "scifar", "wikitext103") and not cfg.data_dir:
        raise ConfigError(f"task {cfg.task} reads files: pass --data-dir (see --help for the file names)")
    return cfg


# Fields whose change would make a resumed run a different run than the checkpointed one.
RESUME_MAY_DIFFER = {"resume", "out", "progress", "threads", "checkpoint_every", "data_dir"}


def resume_mismatches(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    now = current.to_dict()
    return [f"{k}: checkpoint has {saved.get(k)!r}, now {now[k]!r}"
            for k in now if k not in RESUME_MAY_DIFFER and saved.get(k) != now[k]]
