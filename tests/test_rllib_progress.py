"""The progress line, summary.csv and the trimming of a resumed trial's files (no Ray)."""

import csv
import json
from types import SimpleNamespace

from memory_agents.rllib.progress import SUMMARY_CSV, ProgressCallback, RunStopper, trim_trial_files


def fake_trial(path, interval=10):
    return SimpleNamespace(trial_id="t0", path=str(path), local_path=str(path),
                           config={"evaluation_interval": interval}, latest_checkpoint_result=None,
                           last_result={})


def result(it, success, eval_success=None):
    out = {"training_iteration": it, "num_env_steps_sampled_lifetime": 3840 * it,
           "time_total_s": 4.0 * it, "env_runners": {"success": success, "episode_return_mean": 5.0}}
    if eval_success is not None:
        out["evaluation"] = {"env_runners": {"success": eval_success}}
    return out


def test_progress_line_and_fixed_column_summary(tmp_path, capsys):
    trial = fake_trial(tmp_path)
    callback = ProgressCallback(stop={"num_env_steps_sampled_lifetime": 38_400}, label="ur-lstm")
    callback.on_trial_start(0, [trial], trial)
    for it in range(1, 12):
        # RLlib repeats the iteration-10 evaluation in every later result.
        callback.on_trial_result(0, [trial], trial, result(it, 0.1 * it, 0.8 if it >= 10 else None))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("it    1 | steps 3,840/38,400 (10%) | success 0.10 | eval   -- |")
    assert lines[9].startswith("it   10 | steps 38,400/38,400 (100%) | success 1.00 | eval 0.80 (it 10) |")
    assert "eval 0.80 (it 10)" in lines[10] and lines[10].endswith("| ur-lstm")
    assert "elapsed, ETA" in lines[0]
    with open(tmp_path / SUMMARY_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["training_iteration"] for r in rows] == [str(i) for i in range(1, 12)]
    assert rows[0]["eval_success"] == "" and rows[9]["eval_success"] == "0.8" and rows[10]["eval_success"] == ""


def test_time_based_checkpoint_is_requested(tmp_path):
    trial = fake_trial(tmp_path)
    callback = ProgressCallback(checkpoint_every_s=0.0, quiet=True)
    callback.on_trial_start(0, [trial], trial)
    res = result(1, 0.5)
    callback.on_trial_result(0, [trial], trial, res)
    assert res["should_checkpoint"] is True
    slow = ProgressCallback(checkpoint_every_s=3600.0, quiet=True)
    slow.on_trial_start(0, [trial], trial)
    res = result(2, 0.5)
    slow.on_trial_result(0, [trial], trial, res)
    assert "should_checkpoint" not in res


def test_trim_keeps_rows_up_to_the_checkpoint(tmp_path):
    (tmp_path / "progress.csv").write_text("a,training_iteration\n" + "".join(f"x,{i}\n" for i in range(1, 7)))
    (tmp_path / "result.json").write_text("".join(json.dumps({"training_iteration": i}) + "\n" for i in range(1, 7)))
    trim_trial_files(tmp_path, 4)
    assert (tmp_path / "progress.csv").read_text() == "a,training_iteration\n" + "".join(f"x,{i}\n" for i in range(1, 5))
    assert [json.loads(x)["training_iteration"] for x in (tmp_path / "result.json").read_text().splitlines()] == [1, 2, 3, 4]


def test_stopper_reads_nested_criteria():
    stopper = RunStopper({"env_runners/success": 0.9, "training_iteration": 100})
    assert not stopper("t", {"training_iteration": 5, "env_runners": {"success": 0.5}})
    assert stopper("t", {"training_iteration": 5, "env_runners": {"success": 0.95}})
    assert stopper("t", {"training_iteration": 100})
