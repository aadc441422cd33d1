"""Writers of tiny data sets in the exact on-disk formats the readers expect.

For the tests, and for trying every task of the CLI without a download::

    python -c "from supervised.fixtures import write_all; write_all('data/tiny')"
    python -m supervised smnist --data-dir data/tiny/mnist --hidden-size 8 --steps 5
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from supervised.readers import CIFAR_TEST_BATCH, CIFAR_TRAIN_BATCHES, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes: magic 0x0000080<ndim>, big-endian dims, then the data."""
    array = np.asarray(array, dtype=np.uint8)
    magic = IDX_IMAGES_MAGIC if array.ndim == 3 else IDX_LABELS_MAGIC
    assert magic & 0xFF == array.ndim
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def write_mnist(folder: str | Path, train: int = 24, test: int = 12, rows: int = 28, cols: int = 28,
                gz: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """Four MNIST idx files of random images; labels cycle through 0..9. Returns what was written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, count in (("train", train), ("t10k", test)):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, size=(count, rows, cols), dtype=np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = (np.arange(count) % 10).astype(np.uint8)
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def write_cifar10(folder: str | Path, per_batch: int = 6, seed: int = 0) -> dict[str, dict]:
    """``folder/cifar-10-batches-py/`` with five training batches and the test batch, as the
    official python-version pickles (bytes keys, (N, 3072) uint8 rows of R, G, B planes)."""
    batches_dir = Path(folder) / "cifar-10-batches-py"
    batches_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH):
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
                 b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}
        with open(batches_dir / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = batch
    return written


WORDS = "the cat sat on a mat and <unk> dog ran to it".split()


def write_word_corpus(folder: str | Path, layout: str = "wiki", lines: tuple[int, int, int] = (40, 10, 10),
                      seed: int = 0) -> list[Path]:
    """Three token files (``wiki.*.tokens`` or ``ptb.*.txt``) of random sentences over a small vocabulary."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = {"wiki": ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
             "ptb": ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")}[layout]
    rng = np.random.default_rng(seed)
    paths = []
    for name, count in zip(names, lines):
        text = "".join(" " + " ".join(rng.choice(WORDS, size=rng.integers(3, 9))) + " \n" for _ in range(count))
        (folder / name).write_text(text)
        paths.append(folder / name)
    return paths


def write_all(folder: str | Path) -> None:
    folder = Path(folder)
    write_mnist(folder / "mnist")
    write_cifar10(folder / "cifar10")
    write_word_corpus(folder / "wikitext")
