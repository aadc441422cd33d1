"""The copy and adding tasks (Arjovsky, Shah and Bengio 2016), generated on the fly from a seed.

Every batch is a pure function of ``(seed, stream, index)``: a resumed run regenerates exactly the
batches an uninterrupted one would have seen, and evaluation sets never touch the training stream.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Copy task alphabet: 0 is the blank, 1..8 the symbols to remember, 9 the "now reproduce" cue.
COPY_BLANK = 0
COPY_SYMBOLS = 8
COPY_CUE = COPY_SYMBOLS + 1
COPY_REMEMBER = 10
COPY_INPUT_SIZE = COPY_SYMBOLS + 2  # one-hot over blank, symbols, cue
COPY_OUTPUT_SIZE = COPY_SYMBOLS + 1  # the target is a blank or a symbol, never the cue

# Streams keep training batches and the two evaluation sets independent of each other.
TRAIN_STREAM, VAL_STREAM, TEST_STREAM = 0, 1, 2


def batch_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def copy_batch(rng: np.random.Generator, batch_size: int, blanks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One copy-task batch with N = ``blanks``; sequence length T = N + 20.

    Input: 10 random symbols, N - 1 blanks, the cue, 10 blanks (one-hot, size 10).
    Target: N + 10 blanks, then the 10 symbols (class ids 0..8), one target per step.
    """
    length = blanks + 2 * COPY_REMEMBER
    symbols = rng.integers(1, COPY_SYMBOLS + 1, size=(batch_size, COPY_REMEMBER))
    tokens = np.full((batch_size, length), COPY_BLANK, dtype=np.int64)
    tokens[:, :COPY_REMEMBER] = symbols
    tokens[:, blanks + COPY_REMEMBER - 1] = COPY_CUE
    targets = np.full((batch_size, length), COPY_BLANK, dtype=np.int64)
    targets[:, -COPY_REMEMBER:] = symbols
    inputs = torch.nn.functional.one_hot(torch.from_numpy(tokens), COPY_INPUT_SIZE).float()
    return inputs, torch.from_numpy(targets)


def copy_baseline_loss(blanks: int) -> float:
    """Cross-entropy per step of the memoryless strategy: blanks, then uniform over the 8 symbols."""
    return COPY_REMEMBER * math.log(COPY_SYMBOLS) / (blanks + 2 * COPY_REMEMBER)


def adding_batch(rng: np.random.Generator, batch_size: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One adding-task batch: channel 0 values ~ U[0, 1], channel 1 marks one step in each half.

    Target: the sum of the two marked values, shape (B,).
    """
    values = rng.uniform(0.0, 1.0, size=(batch_size, length))
    half = length // 2
    first = rng.integers(0, half, size=batch_size)
    second = rng.integers(half, length, size=batch_size)
    markers = np.zeros((batch_size, length))
    rows = np.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    inputs = np.stack([values, markers], axis=-1)
    return torch.from_numpy(inputs).float(), torch.from_numpy(targets).float()


# Predicting the mean 1.0 always: MSE = Var(U1 + U2) = 2/12.
ADDING_BASELINE_MSE = 1.0 / 6.0
