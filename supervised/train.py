"""The one trainer behind every supervised task.

Reads top to bottom in the order a run happens: resolve the config, read the data, seed, build
model / optimizer / schedule, maybe restore a checkpoint, then the loop (step, log, evaluate,
checkpoint), then the final evaluation and ``metrics.json``.

Resuming is exact: the batch of step k is a pure function of (seed, k), and the checkpoint holds
the model, optimizer, schedule, step, carried recurrent state, logging windows, history and all
RNG states, so kill-and-resume ends with bit-identical parameters to an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from supervised.config import ConfigError, TrainConfig, resolve, resume_mismatches
from supervised.model import SequenceModel
from supervised.tasks import build_task

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
GATE_SAMPLES = 8  # sequences of the current batch whose gates go into the histograms


def total_steps(cfg: TrainConfig, steps_per_epoch: int | None) -> int:
    if cfg.steps is not None:
        return cfg.steps
    if steps_per_epoch is None:
        raise ConfigError(f"task {cfg.task} has no epochs: pass --steps")
    return max(1, math.ceil(cfg.epochs * steps_per_epoch))


def build_schedule(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    if cfg.lr_schedule == "cosine":
        factor = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))  # noqa: E731
    elif cfg.lr_schedule == "step":
        factor = lambda step: cfg.lr_decay_factor ** (step // cfg.lr_decay_every)  # noqa: E731
    else:
        factor = lambda step: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rng_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_atomically(obj: Any, path: Path) -> None:
    # A kill during the write leaves the previous checkpoint intact: write aside, then rename.
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {path}")
    try:
        # Our own file, holding numpy RNG state and the config: not loadable with weights_only.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"--resume: checkpoint {path} is unreadable ({type(e).__name__}: {e})") from None


def log_gate_histograms(writer: SummaryWriter, model: SequenceModel, x: torch.Tensor, step: int) -> None:
    trace = model.gate_trace(x[:GATE_SAMPLES])
    for name in ("f", "r", "g"):
        if name in trace:
            writer.add_histogram(f"gates/{name}", trace[name], step)
    if "g" in trace:
        # Timescale of the effective gate: a unit with g holds its memory for about 1/(1-g) steps.
        g = trace["g"].double().clamp(max=1.0 - 1e-9)
        writer.add_histogram("gates/timescale", 1.0 / (1.0 - g), step)


class Window:
    """Means of the per-step metrics since the last log line (checkpointed, so resumed logs match)."""

    def __init__(self, sums: dict[str, float] | None = None, count: int = 0):
        self.sums, self.count = dict(sums or {}), count

    def add(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: v / self.count for k, v in self.sums.items()} if self.count else {}


def train(cfg: TrainConfig, *, report: Callable[[dict[str, Any]], None] | None = None,
          stop_after_step: int | None = None) -> dict[str, Any] | None:
    """Run (or resume) one training run; returns the final metrics (also written to <out>/metrics.json).

    ``report`` receives each history row (the Ray Tune sweep forwards them). ``stop_after_step``
    abandons the run after that step without the final checkpoint, as a kill would (tests).
    """
    cfg = resolve(cfg)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    try:  # before reading a large data set
        from memory_agents.cells.config import check_cell_name

        check_cell_name(cfg.cell)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    task = build_task(cfg)
    steps = total_steps(cfg, task.steps_per_epoch)
    checkpoint_path = out / CHECKPOINT
    if not cfg.resume and checkpoint_path.exists():
        raise ConfigError(f"{out} already holds a run (checkpoint.pt): pass --resume to continue it or choose another --out")

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    try:
        model = SequenceModel(cfg.cell, task.input_size, task.output_size, cfg.hidden_size, cfg.num_layers,
                              vocabulary_size=task.vocabulary_size)
    except ValueError as e:  # unknown cell names and bad sizes come from build_rnn
        raise ConfigError(str(e)) from None
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = build_schedule(cfg, optimizer, steps)

    step, carry, history, window = 0, None, [], Window()
    if cfg.resume:
        saved = load_checkpoint(checkpoint_path)
        mismatches = resume_mismatches(saved["config"], cfg)
        if mismatches:
            raise ConfigError("--resume with different settings than the checkpoint: " + "; ".join(mismatches))
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        step, carry, history = saved["step"], saved["carry"], saved["history"]
        window = Window(saved["window"]["sums"], saved["window"]["count"])
        set_rng_states(saved["rng"])

    out.mkdir(parents=True, exist_ok=True)
    task.save_artifacts(out)
    with open(out / "config.json", "w") as f:
        json.dump(cfg.to_dict(), f, indent=2)

    def checkpoint() -> None:
        save_atomically({"config": cfg.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "schedule": schedule.state_dict(), "step": step, "carry": carry, "history": history,
                         "window": {"sums": window.sums, "count": window.count}, "rng": rng_states()},
                        checkpoint_path)

    # purge_step drops events a killed run wrote after its last checkpoint, so curves do not fold back.
    writer = SummaryWriter(str(out / "tb"), purge_step=step if cfg.resume else None)
    parameters = sum(p.numel() for p in model.parameters())
    if step == 0:
        writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in cfg.to_dict().items()), 0)
    started = time.time()
    bar = tqdm(total=steps, initial=step, desc=f"{cfg.task} {cfg.cell}", disable=not cfg.progress, dynamic_ncols=True)
    running: dict[str, float] = {}

    model.train()
    x = None  # the last training batch, reused for the final gate histograms
    while step < steps:
        x, y = task.train_batch(step)
        loss, metrics, carry = task.loss(model, x, y, carry, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        schedule.step()
        step += 1

        window.add({**metrics, "grad_norm": grad_norm})
        running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in metrics.items()}
        bar.set_postfix({k: f"{v:.4g}" for k, v in running.items()}, refresh=False)
        bar.update(1)

        row: dict[str, Any] = {}
        if step % cfg.log_every == 0 or step == steps:
            means = window.means()
            window = Window()
            for name, value in means.items():
                writer.add_scalar(f"train/{name}", value, step)
            writer.add_scalar("train/lr", lr, step)
            row.update({f"train_{k}": v for k, v in means.items()}, lr=lr)
        if cfg.gate_histograms_every and step % cfg.gate_histograms_every == 0:
            log_gate_histograms(writer, model, x, step)
        if step % cfg.eval_every == 0 or step == steps:
            model.eval()
            val = task.evaluate(model, "val", cfg.eval_batches)
            model.train()
            for name, value in val.items():
                writer.add_scalar(f"val/{name}", value, step)
            row.update({f"val_{k}": v for k, v in val.items()})
        if row:
            row["step"] = step
            history.append(row)
            if report is not None:
                report(dict(row))
        if stop_after_step is not None and step >= stop_after_step:
            bar.close()
            writer.close()
            return None
        if step % cfg.checkpoint_every == 0 or step == steps:
            checkpoint()
    bar.close()

    model.eval()
    # The final numbers always cover whole splits; --eval-batches only speeds up the periodic checks.
    final = {split: task.evaluate(model, split, None) for split in ("val", "test")}
    for split, values in final.items():
        for name, value in values.items():
            writer.add_scalar(f"final_{split}/{name}", value, step)
    if x is not None and cfg.gate_histograms_every and steps % cfg.gate_histograms_every:
        log_gate_histograms(writer, model, x, step)
    writer.close()
    results = {
        "task": cfg.task, "cell": cfg.cell, "seed": cfg.seed, "steps": step, "parameters": parameters,
        "val": final["val"], "test": final["test"], "primary_metric": task.primary_metric,
        "last_train": next((r for r in reversed(history) if "train_loss" in r), {}),
        **task.info(), "wall_time_s_this_process": round(time.time() - started, 2),
        "config": cfg.to_dict(), "history": history,
    }
    # Atomic too: a complete metrics.json is what marks a finished trial to a resumed sweep.
    tmp = out / (METRICS + ".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, out / METRICS)
    return results
