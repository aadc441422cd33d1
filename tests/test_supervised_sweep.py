"""The Ray Tune sweep of supervised/: argument handling, reports; a real sweep is marked slow."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from supervised.config import ConfigError
from supervised.sweep import main, parse_args, write_reports


def fake_trial(cell: str, seed: int, loss: float) -> dict:
    history = [{"step": s, "train_loss": loss * 10 / s, "val_loss": loss * 12 / s} for s in (1, 2, 5, 10)]
    return {"cell": cell, "seed": seed, "steps": 10, "final": {"test_loss": loss, "val_loss": loss + 0.01},
            "history": history}


def test_reports_csv_table_and_png(tmp_path):
    trials = [fake_trial("ur-lstm", 0, 0.1), fake_trial("ur-lstm", 1, 0.3), fake_trial("lstm", 0, 0.5)]
    paths = write_reports(trials, tmp_path, "adding")
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [(r["cell"], r["seed"], float(r["test_loss"])) for r in rows] == [("ur-lstm", "0", 0.1), ("ur-lstm", "1", 0.3),
                                                                              ("lstm", "0", 0.5)]
    table = paths["markdown"].read_text()
    assert "| ur-lstm | 2 | 0.2 ± 0.1 | 0.21 ± 0.1 |" in table  # mean ± population std over seeds
    assert "| lstm | 1 | 0.5 | 0.51 |" in table
    assert paths["png"].stat().st_size > 10_000 and paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_parse_args_splits_sweep_and_run_options(tmp_path):
    args, base = parse_args(["adding", "--cells", "ur-gru", "gru", "--seeds", "4", "5", "--out", str(tmp_path),
                             "--steps", "7", "--hidden-size", "9"])
    assert args.cells == ["ur-gru", "gru"] and args.seeds == [4, 5]
    assert (base.task, base.steps, base.hidden_size, base.progress) == ("adding", 7, 9, False)


@pytest.mark.parametrize("argv, words", [
    (["adding", "--cells", "ur-lstm", "bogus"], "unknown cell(s) bogus"),
    (["adding", "--hidden-size", "0"], "--hidden-size must be at least 1"),
    (["smnist"], "pass --data-dir"),
])
def test_sweep_user_errors(tmp_path, argv, words, capsys):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_args(argv + ["--out", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path)])
    assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err


@pytest.mark.slow
def test_ray_tune_sweep_end_to_end(tmp_path):
    # Starts a local Ray instance: about a minute on an idle 2-core machine.
    main(["adding", "--cells", "ur-lstm", "lstm", "--seeds", "0", "1", "--out", str(tmp_path), "--num-cpus", "2",
          "--steps", "6", "--hidden-size", "8", "--seq-len", "10", "--eval-seq-len", "20", "--eval-size", "16",
          "--log-every", "2", "--eval-every", "3", "--gate-histograms-every", "0"])
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert sorted((r["cell"], r["seed"]) for r in rows) == [("lstm", "0"), ("lstm", "1"), ("ur-lstm", "0"), ("ur-lstm", "1")]
    assert all(float(r["test_loss"]) > 0 and r["steps"] == "6" for r in rows)
    assert "| ur-lstm | 2 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert all((Path(tmp_path) / "trials" / f"{c}-s{s}" / "metrics.json").is_file() for c in ("lstm", "ur-lstm") for s in (0, 1))
