"""The paper's supervised experiments behind one small interface the trainer drives.

A task knows its data, how to turn model outputs into a loss and metrics, and how to evaluate.
``train_batch(step)`` is a pure function of the step (and the seed), which is what lets a resumed
run see exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from supervised import readers, synthetic
from supervised.config import ConfigError, TrainConfig
from supervised.model import SequenceModel

Carry = Any  # recurrent state carried across training batches (language modelling), else None

# Data-order stream of the image tasks, apart from the synthetic tasks' streams.
ORDER_STREAM = 10


class Task:
    name: str
    input_size: int
    output_size: int
    vocabulary_size: int | None = None
    steps_per_epoch: int | None = None
    primary_metric: str = "loss"  # what sweeps and plots report

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def loss(self, model: SequenceModel, x, y, carry: Carry, step: int) -> tuple[torch.Tensor, dict[str, float], Carry]:
        raise NotImplementedError

    def evaluate(self, model: SequenceModel, split: str, max_batches: int | None) -> dict[str, float]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Run facts worth reporting next to the metrics (baselines, permutation seed, sizes)."""
        return {}

    def save_artifacts(self, out_dir: Path) -> None:
        """Files that make the run reproducible beyond its config (e.g. the pMNIST permutation)."""


# ---------------------------------------------------------------------------------------------


class _SyntheticTask(Task):
    """Batches made on the fly: batch k of a stream is a pure function of (seed, stream, k)."""

    primary_metric = "loss"
    make_batch: Any  # staticmethod (rng, size, length) -> (x, y), set by each task

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.lengths = {"val": cfg.seq_len, "test": cfg.eval_seq_len}

    def _batch(self, stream: int, index: int, size: int, length: int):
        return self.make_batch(synthetic.batch_rng(self.cfg.seed, stream, index), size, length)

    def train_batch(self, step):
        return self._batch(synthetic.TRAIN_STREAM, step, self.cfg.batch_size, self.cfg.seq_len)

    def _eval_batches(self, split: str):
        stream = synthetic.VAL_STREAM if split == "val" else synthetic.TEST_STREAM
        return lambda index, size: self._batch(stream, index, size, self.lengths[split])


class CopyTask(_SyntheticTask):
    name = "copy"
    input_size = synthetic.COPY_INPUT_SIZE
    output_size = synthetic.COPY_OUTPUT_SIZE
    make_batch = staticmethod(synthetic.copy_batch)

    def _scores(self, logits, y):
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        recalled = logits[:, -synthetic.COPY_REMEMBER:].argmax(-1) == y[:, -synthetic.COPY_REMEMBER:]
        return loss, recalled.float().mean()

    def loss(self, model, x, y, carry, step):
        logits, _ = model(x)
        loss, accuracy = self._scores(logits, y)
        return loss, {"loss": loss.item(), "accuracy": accuracy.item()}, None

    @torch.no_grad()
    def evaluate(self, model, split, max_batches):
        return _evaluate_synthetic(self.cfg, max_batches, self._eval_batches(split),
                                   lambda x, y: self._scores(model(x)[0], y),
                                   synthetic.copy_baseline_loss(self.lengths[split]))

    def info(self):
        return {"baseline_loss": {split: synthetic.copy_baseline_loss(n) for split, n in self.lengths.items()},
                "blanks": self.lengths}


class AddingTask(_SyntheticTask):
    name = "adding"
    input_size = 2
    output_size = 1
    make_batch = staticmethod(synthetic.adding_batch)

    def loss(self, model, x, y, carry, step):
        prediction, _ = model(x, last_only=True)
        loss = F.mse_loss(prediction.squeeze(-1), y)
        return loss, {"loss": loss.item()}, None

    @torch.no_grad()
    def evaluate(self, model, split, max_batches):
        return _evaluate_synthetic(self.cfg, max_batches, self._eval_batches(split),
                                   lambda x, y: (F.mse_loss(model(x, last_only=True)[0].squeeze(-1), y), None),
                                   synthetic.ADDING_BASELINE_MSE)

    def info(self):
        return {"baseline_loss": {split: synthetic.ADDING_BASELINE_MSE for split in self.lengths},
                "lengths": self.lengths}


def _evaluate_synthetic(cfg: TrainConfig, max_batches, make_batch, score, baseline: float) -> dict[str, float]:
    batches = math.ceil(cfg.eval_size / cfg.eval_batch_size)
    if max_batches is not None:
        batches = min(batches, max_batches)
    total_loss = total_accuracy = 0.0
    count = 0
    for i in range(batches):
        n = min(cfg.eval_batch_size, cfg.eval_size - i * cfg.eval_batch_size)
        x, y = make_batch(i, n)
        loss, accuracy = score(x, y)
        total_loss += loss.item() * n
        total_accuracy += (accuracy.item() if accuracy is not None else 0.0) * n
        count += n
    result = {"loss": total_loss / count, "baseline_loss": baseline}
    if accuracy is not None:
        result["accuracy"] = total_accuracy / count
    return result


# ---------------------------------------------------------------------------------------------


class ImageSequenceTask(Task):
    """Classify an image read one pixel (one step of C channels) at a time, from the last hidden state."""

    output_size = readers.NUM_CLASSES
    primary_metric = "accuracy"

    def __init__(self, cfg: TrainConfig, splits: readers.ImageSplits, pixel_max: float, permutation_seed: int | None):
        self.cfg = cfg
        self.name = cfg.task
        self.pixel_max = pixel_max
        train_x, train_y = splits.train_x, splits.train_y
        val_size = cfg.val_size or 0
        if val_size >= len(train_x):
            raise ConfigError(f"--val-size {val_size} leaves no training examples (train has {len(train_x)})")
        # The validation split is the *last* val_size training examples: fixed, whatever the seed.
        cut = len(train_x) - val_size
        self.steps = train_x.shape[1]
        self.input_size = train_x.shape[2]
        self.permutation_seed = permutation_seed
        self.permutation = (np.random.default_rng(permutation_seed).permutation(self.steps)
                            if permutation_seed is not None else None)
        self.data = {"train": (train_x[:cut], train_y[:cut]), "val": (train_x[cut:], train_y[cut:]),
                     "test": (splits.test_x, splits.test_y)}
        self.train_size = cut
        # Drop the last partial batch so every step has the same batch size.
        self.steps_per_epoch = max(1, cut // cfg.batch_size)

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).float() / self.pixel_max
        return x[:, torch.from_numpy(self.permutation)] if self.permutation is not None else x

    def train_batch(self, step):
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, ORDER_STREAM, epoch])).permutation(self.train_size)
        index = order[position * self.cfg.batch_size:(position + 1) * self.cfg.batch_size]
        images, labels = self.data["train"]
        return self._tensor(images[index]), torch.from_numpy(labels[index])

    def loss(self, model, x, y, carry, step):
        logits, _ = model(x, last_only=True)
        loss = F.cross_entropy(logits, y)
        accuracy = (logits.argmax(-1) == y).float().mean()
        return loss, {"loss": loss.item(), "accuracy": accuracy.item()}, None

    @torch.no_grad()
    def evaluate(self, model, split, max_batches):
        images, labels = self.data[split]
        n = len(images)
        if n == 0:
            return {}
        size = self.cfg.eval_batch_size
        batches = math.ceil(n / size) if max_batches is None else min(math.ceil(n / size), max_batches)
        total_loss = correct = count = 0.0
        for i in range(batches):
            x, y = self._tensor(images[i * size:(i + 1) * size]), torch.from_numpy(labels[i * size:(i + 1) * size])
            logits, _ = model(x, last_only=True)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            count += len(y)
        return {"loss": total_loss / count, "accuracy": correct / count}

    def info(self):
        sizes = {split: len(labels) for split, (_, labels) in self.data.items()}
        facts: dict[str, Any] = {"split_sizes": sizes, "sequence_steps": self.steps, "channels": self.input_size}
        if self.permutation is not None:
            facts["permutation_seed"] = self.permutation_seed
        return facts

    def save_artifacts(self, out_dir):
        if self.permutation is not None:
            np.save(out_dir / "permutation.npy", self.permutation)


# ---------------------------------------------------------------------------------------------


def batchify(ids: np.ndarray, rows: int) -> torch.Tensor:
    """Cut a token stream into ``rows`` contiguous streams, (rows, length); the remainder is dropped."""
    length = len(ids) // rows
    if length < 2:
        raise ConfigError(f"a corpus split of {len(ids)} tokens is too short for {rows} streams")
    return torch.from_numpy(ids[:rows * length].reshape(rows, length))


def detach_state(state):
    """The carried state without its gradient path: ``h`` (GRU family) or ``(h, c)`` (LSTM family)."""
    return state.detach() if isinstance(state, torch.Tensor) else tuple(s.detach() for s in state)


class LanguageModelTask(Task):
    """Word-level language modelling with truncated BPTT; the state is carried across batches."""

    name = "wikitext103"
    primary_metric = "perplexity"

    def __init__(self, cfg: TrainConfig, corpus: readers.WordCorpus):
        self.cfg = cfg
        self.corpus = corpus
        self.vocabulary_size = len(corpus.vocabulary)
        self.input_size = cfg.embedding_size
        self.output_size = self.vocabulary_size
        self.train_streams = batchify(corpus.train, cfg.batch_size)
        self.steps_per_epoch = math.ceil((self.train_streams.shape[1] - 1) / cfg.bptt)

    def _segment(self, streams: torch.Tensor, position: int):
        start = position * self.cfg.bptt
        end = min(start + self.cfg.bptt, streams.shape[1] - 1)
        return streams[:, start:end], streams[:, start + 1:end + 1]

    def train_batch(self, step):
        return self._segment(self.train_streams, step % self.steps_per_epoch)

    def loss(self, model, x, y, carry, step):
        if step % self.steps_per_epoch == 0:
            carry = None  # each epoch starts the streams afresh
        logits, state = model(x, carry)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        # Truncated BPTT: keep the state's value, cut its gradient path.
        return loss, {"loss": loss.item(), "perplexity": math.exp(min(loss.item(), 50.0))}, detach_state(state)

    @torch.no_grad()
    def evaluate(self, model, split, max_batches):
        ids = self.corpus.valid if split == "val" else self.corpus.test
        streams = batchify(ids, self.cfg.eval_batch_size)
        segments = math.ceil((streams.shape[1] - 1) / self.cfg.bptt)
        if max_batches is not None:
            segments = min(segments, max_batches)
        state = None
        total = count = 0.0
        for position in range(segments):
            x, y = self._segment(streams, position)
            logits, state = model(x, state)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
            count += y.numel()
        return {"loss": total / count, "perplexity": math.exp(total / count)}

    def info(self):
        return {"corpus_files": list(self.corpus.files), "vocabulary_size": self.vocabulary_size,
                "tokens": {"train": len(self.corpus.train), "val": len(self.corpus.valid), "test": len(self.corpus.test)},
                "unknown_eval_words_mapped_to_unk": self.corpus.unknown_in_eval}


# ---------------------------------------------------------------------------------------------


def build_task(cfg: TrainConfig) -> Task:
    """Read or set up the data of ``cfg.task``; raises readers.DataError on bad files."""
    if cfg.task == "copy":
        return CopyTask(cfg)
    if cfg.task == "adding":
        return AddingTask(cfg)
    if cfg.task in ("smnist", "pmnist"):
        permutation_seed = cfg.permutation_seed if cfg.task == "pmnist" else None
        return ImageSequenceTask(cfg, readers.read_mnist(cfg.data_dir), 255.0, permutation_seed)
    if cfg.task == "scifar":
        return ImageSequenceTask(cfg, readers.read_cifar10(cfg.data_dir), 255.0, None)
    if cfg.task == "digits":
        return ImageSequenceTask(cfg, readers.read_digits(), 16.0, None)
    if cfg.task == "wikitext103":
        return LanguageModelTask(cfg, readers.read_word_corpus(cfg.data_dir))
    raise ValueError(f"unknown task {cfg.task!r}")
