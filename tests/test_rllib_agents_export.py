"""`python -m memory_agents.experiments.agents`: a real two-trial match grid, then its final
agents exported, evaluated and tabulated."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from memory_agents.experiments import agents


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    argv = [sys.executable, "-m", "memory_agents.experiments.match", "--cells", "ur-lstm,gru",
            "--delays", "3", "--seeds", "1", "--timesteps", "280", "--num-envs", "2",
            "--hidden-size", "16", "--num-epochs", "1", "--train-batch-size", "140",
            "--minibatch-size", "70", "--eval-interval", "0", "--colour-order", "instance",
            "--storage-path", str(root), "--experiment-name", "grid"]
    proc = subprocess.run(argv, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "grid"


def test_exports_evaluates_and_tabulates_every_trial(grid, tmp_path, capsys):
    out = tmp_path / "docs"
    assert agents.main([str(grid), "--out", str(out), "--episodes", "8"]) == 0
    names = sorted(p.name for p in (out / "agents").iterdir() if p.is_dir())
    assert names == ["gru-s0", "ur-lstm-s0"]  # one delay: no -d in the names
    for name in names:
        agent = json.loads((out / "agents" / name / "agent.json").read_text())
        assert agent["env_config"] == {"distractor_steps": 3, "colour_order": "instance"}
        assert agent["model_config"]["cell"] == name.split("-s")[0]
        assert "success rate:" in (out / "agents" / f"{name}.eval.txt").read_text()
    rows = list(csv.DictReader((out / "evaluations.csv").open()))
    assert sorted(r["cell"] for r in rows) == ["gru", "ur-lstm"]
    for row in rows:
        assert int(row["env_steps"]) >= 280 and int(row["episodes"]) == 8
        shares = [float(row[f"touched_{s}"]) for s in ("left", "centre", "right", "none")]
        assert abs(sum(shares) - 1) < 1e-3
        assert float(row["ci_low"]) <= float(row["success"]) <= float(row["ci_high"])
        assert 0 <= float(row["probe_accuracy"]) <= 1
    table = (out / "evaluations.md").read_text()
    assert table.count("\n| `") == 2 and "memory probe" in table
    # The exported agent evaluates on its own, as the README says.
    from memory_agents.cli import main as rllib

    capsys.readouterr()
    assert rllib(["evaluate", str(out / "agents" / "gru-s0"), "--episodes", "8", "--seed", "100000"]) == 0
    first = capsys.readouterr().out.splitlines()[3]  # the success line
    assert first in (out / "agents" / "gru-s0.eval.txt").read_text()


def test_no_checkpoint_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "trial").mkdir()
    (tmp_path / "trial" / "params.json").write_text(json.dumps({"cell": "gru", "delay": 3, "seed": 0}))
    assert agents.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no trial" in capsys.readouterr().err


def test_unfinished_trials_are_skipped_and_earlier_rows_kept(grid, tmp_path, capsys):
    import shutil

    copy = tmp_path / "grid"
    shutil.copytree(grid, copy)
    gru = next(p for p in copy.iterdir() if p.is_dir() and "gru" in p.name and "ur-lstm" not in p.name)
    params = json.loads((gru / "params.json").read_text())
    params["timesteps"] = 10**6  # as if the run were still going
    (gru / "params.json").write_text(json.dumps(params))
    out = tmp_path / "docs"
    # An earlier session's row for another trial, kept in the table.
    out.mkdir()
    earlier = {c: "" for c in agents.EVAL_COLUMNS}
    earlier.update(cell="lstm", delay=3, seed=2, env_steps=280, episodes=8, success=0.5, ci_low=0.2,
                   ci_high=0.8, touched_left=0.5, touched_centre=0.5, touched_right=0.0, touched_none=0.0,
                   median_touch_step=6, probe_accuracy=1.0, probe_chance=0.5, agent="agents/lstm-s2")
    with open(out / "evaluations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=agents.EVAL_COLUMNS)
        writer.writeheader()
        writer.writerow(earlier)
    assert agents.main([str(copy), "--out", str(out), "--episodes", "4"]) == 0
    assert "skipping" in capsys.readouterr().out
    assert not (out / "agents" / "gru-s0").exists()
    rows = list(csv.DictReader((out / "evaluations.csv").open()))
    assert sorted((r["cell"], r["seed"]) for r in rows) == [("lstm", "2"), ("ur-lstm", "0")]
    assert "| `lstm` | 3 | 2 |" in (out / "evaluations.md").read_text()


def test_tables_are_sorted_and_a_kept_row_keeps_its_interval(tmp_path):
    # A row kept from an earlier session comes back from its CSV rounded (0.4395 for 115/300's
    # upper bound 0.43946); its interval must still print as its evaluation printed it.
    def row(cell, seed, success, ci_low=0.0, ci_high=1.0):
        return {"cell": cell, "delay": 30, "seed": seed, "env_steps": 2000640, "episodes": 300,
                "success": success, "ci_low": ci_low, "ci_high": ci_high, "touched_left": 0.1,
                "touched_centre": 0.2, "touched_right": 0.3, "touched_none": 0.4, "median_touch_step": 7.0,
                "probe_accuracy": 0.8, "probe_chance": 0.347, "agent": f"agents/{cell}-s{seed}"}

    with open(tmp_path / "evaluations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=agents.EVAL_COLUMNS)
        writer.writeheader()
        writer.writerow(row("ur-gru", 1, "0.3833", "0.3301", "0.4395"))
        writer.writerow(row("ur-gru", 0, "0.7900", "0.7404", "0.8323"))
    paths = agents.write_tables([row("gru", 0, 250 / 300)], tmp_path, seed=7)
    md = paths["md"].read_text()
    assert "| `ur-gru` | 30 | 1 | 2,000,640 | 0.383 (0.330-0.439) |" in md
    assert "| `gru` | 30 | 0 | 2,000,640 | 0.833 (0.787-0.871) |" in md  # interval from 250/300
    assert [(r["cell"], r["seed"]) for r in csv.DictReader(paths["csv"].open())] == \
        [("gru", "0"), ("ur-gru", "0"), ("ur-gru", "1")]
    assert md.index("`gru`") < md.index("| `ur-gru` | 30 | 0") < md.index("| `ur-gru` | 30 | 1")
    assert "--seed 7 --probe" in md
    again = agents.write_tables([], tmp_path, seed=7)["md"].read_text()  # rebuilt from the CSV alone
    assert again == md
