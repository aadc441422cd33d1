"""The replication grid: its file, the CSVs rebuilt from finished trials, and the report from CSVs alone."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from scipy import stats

from supervised.config import ConfigError
from supervised.replication import CURVES, RESULT_COLUMNS, RESULTS, collect, load_grid, restore, sweep_dir
from supervised.report import REPORT, build_report
from supervised.sweep import finished_record, plan_trials, SweepArgs, sweep_base, trial_config
from supervised.train import train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

GRID = """
seeds: [0, 1, 2]
settings:
  add:
    options: {task: adding, hidden_size: 8, seq_len: 10, eval_seq_len: 20, eval_size: 16, steps: 6, eval_every: 3,
              log_every: 2, checkpoint_every: 3, gate_histograms_every: 0}
    paper: {hidden_size: 256, seq_len: 200, eval_seq_len: 1000}
  img:
    options: {task: digits, hidden_size: 8, epochs: 2}
    paper: {hidden_size: 256, epochs: 100, data: "MNIST"}
phases:
  - {setting: add, cells: [lstm, ur-lstm, o-lstm]}
  - {setting: img, cells: [ur-lstm, lstm, ur-gru, gru]}
sections:
  - {name: abl, title: "Ablation", setting: add, cells: [lstm, ur-lstm, o-lstm], metric: loss, split: val, kind: ablation,
     paper: "UR learns it"}
  - {name: img, title: "Images", setting: img, cells: [ur-lstm, lstm, ur-gru, gru], metric: accuracy, split: test,
     paper: "UR-LSTM 99.28%"}
"""


def write_grid(tmp_path: Path, text: str = GRID) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_the_repository_grid_runs_the_issue_items_in_order():
    grid = load_grid(ROOT / "configs/supervised/replication.yaml")
    planned = grid.planned()
    presets = ["lstm", "coupled-lstm", "c-lstm", "o-lstm", "u-lstm", "r-lstm", "ur-lstm", "om-lstm"]
    assert len(planned) == 96 and grid.seeds == [0, 1, 2]
    # The adding ablation first, seed 0 of every preset before seed 1; then the copy ablation.
    assert planned[:9] == [("adding-t100", c, 0) for c in presets] + [("adding-t100", "lstm", 1)]
    assert [s for s, _, _ in planned[24:48]] == ["copy-n50"] * 24
    assert [s for s, _, _ in dict.fromkeys((s, 0, 0) for s, _, _ in planned)] == [
        "adding-t100", "copy-n50", "adding-t200", "fashion-seq", "fashion-perm", "ptb"]
    assert all(len([p for p in planned if p[:2] == (section.setting, cell)]) == 3
               for section in grid.sections for cell in section.cells)


@pytest.mark.parametrize("change, words", [
    (("{setting: img, cells", "{setting: nope, cells"), "phase 2: unknown setting 'nope'"),
    (("cells: [ur-lstm, lstm, ur-gru, gru]}\nsections", "cells: [ur-lstm, bogus]}\nsections"), "unknown cell 'bogus'"),
    (("hidden_size: 8, epochs: 2", "hidden_size: eight, epochs: 2"), "hidden_size must be int"),
    (("hidden_size: 8, epochs: 2", "hidden_size: 8, epochs: -2"), "--epochs must be positive"),
    (("metric: accuracy", "metric: speed"), "metric must be one of"),
    (("cells: [lstm, ur-lstm, o-lstm], metric", "cells: [lstm, gru], metric"), "section abl: no phase runs gru on 'add'"),
    (("  - {setting: img", "  - {setting: add, cells: [lstm]}\n  - {setting: img"), "two phases run the same cell"),
])
def test_bad_grid_files_fail_before_anything_runs(tmp_path, change, words):
    assert change[0] in GRID
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_grid(write_grid(tmp_path, GRID.replace(*change)))


def test_csvs_hold_the_finished_trials_only(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    base = sweep_base(grid.settings["add"].config(), sweep_dir(runs, "add"))
    train(trial_config(base, sweep_dir(runs, "add"), "ur-lstm", 1))
    train(trial_config(base, sweep_dir(runs, "add"), "lstm", 0), stop_after_step=4)  # killed: not finished
    assert collect(grid, runs, docs) == 1
    rows = list(csv.DictReader(open(docs / RESULTS)))
    assert list(rows[0]) == RESULT_COLUMNS
    assert (rows[0]["setting"], rows[0]["cell"], rows[0]["seed"], rows[0]["steps"], rows[0]["seq_len"]) == ("add", "ur-lstm", "1", "6", "10")
    assert float(rows[0]["val_baseline_loss"]) == pytest.approx(1 / 6) and float(rows[0]["test_loss"]) > 0
    curves = list(csv.DictReader(open(docs / CURVES)))
    assert {(r["key"], r["step"]) for r in curves} == {("train_loss", "2"), ("train_loss", "4"), ("train_loss", "6"),
                                                       ("val_loss", "3"), ("val_loss", "6")}


def test_committed_csv_rows_count_as_finished_on_a_machine_without_the_run_dirs(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    base = sweep_base(grid.settings["add"].config(), sweep_dir(runs, "add"))
    train(trial_config(base, sweep_dir(runs, "add"), "ur-lstm", 1))
    collect(grid, runs, docs)
    before = {name: (docs / name).read_text() for name in (RESULTS, CURVES)}
    # Another machine: the CSVs came with the clone, the run directories did not.
    fresh = tmp_path / "fresh"
    assert restore(grid, fresh, docs) == 1 and restore(grid, fresh, docs) == 0
    fresh_base = sweep_base(grid.settings["add"].config(), sweep_dir(fresh, "add"))
    record = finished_record(trial_config(fresh_base, sweep_dir(fresh, "add"), "ur-lstm", 1))
    assert record is not None and record["steps"] == 6
    done, todo = plan_trials(SweepArgs(cells=["lstm", "ur-lstm", "o-lstm"], seeds=[0, 1, 2], out=str(sweep_dir(fresh, "add")),
                                       resume=True), fresh_base)
    assert [(r["cell"], r["seed"]) for r in done] == [("ur-lstm", 1)] and ("ur-lstm", 1) not in todo and len(todo) == 8
    assert collect(grid, fresh, docs) == 1
    assert {name: (docs / name).read_text() for name in (RESULTS, CURVES)} == before


def fake_results(docs: Path, rows: list[tuple], curves: list[tuple]) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    with open(docs / RESULTS, "w", newline="") as f:
        writer = csv.DictWriter(f, RESULT_COLUMNS)
        writer.writeheader()
        for setting, cell, seed, metric, value, baseline in rows:
            split = "val" if setting == "add" else "test"
            writer.writerow({"setting": setting, "task": "adding" if setting == "add" else "digits", "cell": cell,
                             "seed": seed, "steps": 6, "primary_metric": metric, f"{split}_{metric}": value,
                             f"{'test' if split == 'val' else 'val'}_{metric}": value,
                             "val_baseline_loss": baseline, "test_baseline_loss": baseline})
    with open(docs / CURVES, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["setting", "cell", "seed", "step", "key", "value"])
        writer.writerows(curves)


def test_report_from_a_partial_csv(tmp_path):
    docs = tmp_path / "docs"
    adding = {"lstm": [0.16, 0.17, 0.18], "ur-lstm": [0.01, 0.02, 0.03], "o-lstm": [0.02, 0.03, 0.05]}
    rows = [("add", cell, seed, "loss", v, 1 / 6) for cell, values in adding.items() for seed, v in enumerate(values)]
    # Images: lstm visibly ahead of ur-lstm; the GRUs have one seed so far, ur-gru none.
    rows += [("img", "ur-lstm", s, "accuracy", v, "") for s, v in enumerate([0.50, 0.52, 0.51])]
    rows += [("img", "lstm", s, "accuracy", v, "") for s, v in enumerate([0.60, 0.61, 0.62])]
    rows += [("img", "gru", 0, "accuracy", 0.4, "")]
    curves = [("add", cell, seed, step, "val_loss", v * 10 / step) for cell, values in adding.items()
              for seed, v in enumerate(values) for step in (1, 2, 5, 10)]
    fake_results(docs, rows, curves)
    report = build_report(write_grid(tmp_path), docs).read_text()
    assert report == (docs / REPORT).read_text()
    assert "**16 of 21 trials finished**" in report
    # Mean ± sample std over seeds, the verdict's split in bold; the baseline row.
    # ... and when each seed's validation loss first fell to half the baseline (0.083): steps 2, 5, 5.
    assert "| ur-lstm | 3/3 | **0.02 ± 0.01** | 0.02 ± 0.01 | 4 (3/3) |" in report
    assert "| lstm | 3/3 | **0.17 ± 0.01** | 0.17 ± 0.01 | never (0/3) |" in report
    assert "| *baseline (no memory)* | | 0.1667 | 0.1667 | |" in report
    p = stats.ttest_ind([0.01, 0.02, 0.03], [0.16, 0.17, 0.18], equal_var=False).pvalue
    assert f"ur-lstm vs lstm: ur-lstm ahead by 0.15 (Welch p = {p:.2g}: visible at 3 seeds)" in report
    # ur-lstm is best and visibly ahead of lstm: the ablation is reproduced; o-lstm is not visibly worse than it.
    assert "| [Ablation](#abl) | **reproduced** | ur-lstm ranks 1/3 (best: ur-lstm)" in report
    assert "| [Images](#img) | **pending** | 7/12 trials finished |" in report
    assert "| ur-gru | 0/3 | pending | pending |" in report and "| gru | 1/3 | 40 | **40** |" in report
    assert "| ur-lstm | 3/3 | 51 ± 1 | **51 ± 1** |" in report  # accuracy in %
    assert "units 8 vs paper 256 (0.031×); train length 10 vs paper 200 (0.05×); eval length 20 vs paper 1000 (0.02×)" in report
    assert "epochs 2 vs paper 100 (0.02×); optimizer steps 6; data: paper MNIST" in report
    assert "- **Time per trial** (one CPU thread, shared machine; a resumed trial counts its last process only): pending" in report
    assert "| Images | test | -10 | " in report and "| **no** |" not in report.split("| Images | test |")[1].split("\n")[0]
    for png in ("curves-abl.png", "ablation.png"):
        assert f"]({png})" in report and (docs / png).read_bytes()[:4] == b"\x89PNG"
    assert not (docs / "curves-img.png").exists()  # no curves in the CSV for it: no empty figure


def test_report_verdicts_not_and_partly(tmp_path):
    docs = tmp_path / "docs"
    img = {"ur-lstm": [0.50, 0.52, 0.51], "lstm": [0.60, 0.61, 0.62], "ur-gru": [0.7, 0.5, 0.6], "gru": [0.55, 0.6, 0.5]}
    adding = {"lstm": [0.16, 0.17, 0.18], "ur-lstm": [0.10, 0.2, 0.15], "o-lstm": [0.01, 0.02, 0.03]}
    fake_results(docs, [("img", c, s, "accuracy", v, "") for c, vs in img.items() for s, v in enumerate(vs)]
                 + [("add", c, s, "loss", v, 1 / 6) for c, vs in adding.items() for s, v in enumerate(vs)], [])
    report = build_report(write_grid(tmp_path), docs).read_text()
    # lstm visibly ahead of ur-lstm: not reproduced, whatever the GRUs do.
    assert "| [Images](#img) | **not** | ur-lstm vs lstm: ur-lstm behind by 10 points" in report
    # o-lstm visibly best; ur-lstm ahead of lstm, but not visibly: partly.
    assert ("| [Ablation](#abl) | **partly** | ur-lstm ranks 2/3 (best: o-lstm, visibly ahead of ur-lstm); "
            "ur-lstm vs lstm: ur-lstm ahead by 0.02 (Welch p = 0.56: NOT visible at 3 seeds) |") in report


def test_the_grid_runs_end_to_end_with_max_concurrent_2(tmp_path):
    from supervised.replication import main

    grid = write_grid(tmp_path, GRID.replace("seeds: [0, 1, 2]", "seeds: [0, 1]")
                      .replace("  - {setting: img, cells: [ur-lstm, lstm, ur-gru, gru]}\n", "")
                      .split("  - {name: img")[0])
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    main(["--grid", str(grid), "--runs", str(runs), "--docs", str(docs), "--max-concurrent", "2"])
    rows = list(csv.DictReader(open(docs / RESULTS)))
    assert sorted((r["cell"], r["seed"], r["steps"]) for r in rows) == [
        (c, s, "6") for c in ("lstm", "o-lstm", "ur-lstm") for s in ("0", "1")]
    assert all(float(r["val_loss"]) > 0 for r in rows)
    assert "6 of 6 trials finished" in (docs / REPORT).read_text()


def test_max_concurrent_below_one_is_refused_before_anything_runs(tmp_path, capsys):
    from supervised.replication import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--grid", str(write_grid(tmp_path)), "--runs", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"),
              "--max-concurrent", "0"])
    assert exit_info.value.code == 2 and "--max-concurrent must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "docs").exists()
