"""The cell-versus-cell experiment's command line and report (no training: synthetic trials)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memory_agents.experiments import match


def _write_trial(root, name, cell, seed, successes, steps_per_report=1000):
    trial = root / name
    trial.mkdir()
    (trial / "params.json").write_text(json.dumps({"cell": cell, "delay": 30, "seed": seed}))
    lines = []
    for i, value in enumerate(successes, start=1):
        lines.append(json.dumps({
            "training_iteration": i, "env_steps": i * steps_per_report, "train_success": value,
            "train_last_phase_reward": 10 * value, "episode_return_mean": 5.0,
            # evaluation every other report, as with --eval-interval 2
            "eval_success": value if i % 2 == 0 else None, "eval_last_phase_reward": None,
        }))
    (trial / "result.json").write_text("\n".join(lines) + "\n")


def test_parse_args_types_and_boolean_flags():
    args = match.parse_args(["--cells", "gru", "--timesteps", "1000", "--colour-order", "instance", "--lr", "0.002"])
    assert args.cells == "gru" and args.timesteps == 1000 and args.lr == 0.002
    assert args.colour_order == "instance"
    assert match.parse_args(["--resume"]).resume is True
    defaults = match.parse_args([])
    assert defaults.colour_order == "instance" and defaults.num_epochs == 8 and defaults.minibatch_size == 0


def test_help_explains_every_option_from_its_field_docstring(capsys):
    with pytest.raises(SystemExit):
        match.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert len(match.field_docs(match.Args)) == len(match.fields(match.Args))  # none without a text
    assert "--timesteps TIMESTEPS env steps per trial (default: 2000000)" in text
    assert "--results RESULTS a match_curves.csv kept from earlier sessions" in text
    assert "(default: )" not in text and "(default: the experiment folder) (default" not in text
    # The module docstring is the description, its commands whole (a backslash ends each line).
    assert "--timesteps 2000000 \\ --results docs/rl/my_grid/match_curves.csv" in text


def test_report_from_trial_results(tmp_path):
    experiment = tmp_path / "exp"
    experiment.mkdir()
    ramp = [0.3, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0, 1.0]
    _write_trial(experiment, "t0", "ur-lstm", 0, ramp)
    _write_trial(experiment, "t1", "ur-lstm", 1, [0.3, 0.3, 0.5, 0.7, 0.9, 0.9, 0.9, 0.96])
    _write_trial(experiment, "t2", "lstm", 0, [0.3] * 8)
    (experiment / "unfinished").mkdir()  # a trial with params but no results is skipped
    (experiment / "unfinished" / "params.json").write_text(json.dumps({"cell": "gru", "delay": 30, "seed": 0}))

    paths = match.write_report(experiment, tmp_path / "out")
    df = match.collect_curves(experiment)
    assert len(df) == 24 and set(df["cell"]) == {"ur-lstm", "lstm"}
    assert paths["png"].stat().st_size > 10_000  # a real figure, not an empty file
    table = paths["table"].read_text()
    # Final = mean of the last 3 reports: ur-lstm seeds 0.983 and 0.92 -> 0.95 ± 0.03.
    row = next(line for line in table.splitlines() if line.startswith("| ur-lstm | 30 | 2 | 8,000"))
    finals = [np.mean(ramp[-3:]), np.mean([0.9, 0.9, 0.96])]
    assert f"{np.mean(finals):.2f} ± {np.std(finals):.2f}" in row
    assert "5,000 (2/2)" in row  # both seeds first reach 90% at report 5
    assert "| lstm | 30 | 1 | 8,000 | 0.30 ± 0.00 | — (0/1) |" in table
    assert "eval_success" in table  # a second table for the greedy evaluations


@pytest.mark.parametrize("text, message", [
    ("{head", "not valid JSON"), ("[1]", "must be a JSON object"), ('{"cell": "gru"}', "use --cells"),
])
def test_bad_model_config_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        match.parse_model_config(text)
    assert match.parse_model_config("") == {}
    assert match.parse_model_config('{"core_skip": true}') == {"core_skip": True}


def test_bad_model_config_value_fails_before_ray_starts(tmp_path, capsys):
    argv = ["--cells", "ur-lstm", "--delays", "5", "--storage-path", str(tmp_path),
            "--model-config", '{"core_skip": "yes"}']
    assert match.main(argv) == 2
    assert "core_skip" in capsys.readouterr().err
    assert not (tmp_path / "match").exists()


def test_missing_results_raise_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No trial results"):
        match.collect_curves(tmp_path)


def test_resume_keeps_finished_trials_and_continues_the_rest(tmp_path):
    """A real two-trial grid, killed (SIGKILL, whole process group) while the second trial
    runs; --resume leaves the first trial's results untouched and finishes the second from
    its checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "memory_agents.experiments.match", "--cells", "ur-lstm",
            "--delays", "5", "--seeds", "2", "--timesteps", "2800", "--num-envs", "2",
            "--hidden-size", "16", "--num-epochs", "1", "--train-batch-size", "280", "--minibatch-size", "70",
            "--eval-interval", "0", "--checkpoint-freq", "2", "--storage-path", str(tmp_path),
            "--experiment-name", "grid", "--model-config", '{"head_hiddens": [8], "core_skip": true}']
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    grid = tmp_path / "grid"

    def saved_steps(trial):
        return [json.loads(p.read_text())["env_steps"] for p in trial.glob("checkpoint_*/match_progress.json")]

    def second_trial_checkpointed():
        # One trial saved its final checkpoint, the other at least one before its end.
        trials = list(grid.glob("train_trial_*"))
        done = [t for t in trials if any(s >= 2800 for s in saved_steps(t))]
        running = [t for t in trials if saved_steps(t) and t not in done]
        return len(done) == 1 and len(running) == 1

    deadline = time.time() + 300
    while not second_trial_checkpointed():
        assert proc.poll() is None, "the grid ended before the test could interrupt it"
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    finished = next(t for t in grid.glob("train_trial_*") if any(s >= 2800 for s in saved_steps(t)))
    finished_rows = (finished / "result.json").read_text()

    resumed = subprocess.run(argv + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert (finished / "result.json").read_text() == finished_rows  # not recomputed
    df = match.collect_curves(grid)
    assert sorted(df["seed"].unique()) == [0, 1]
    for _, run in df.groupby("seed"):
        assert run["env_steps"].max() >= 2800
        assert list(run["iteration"]) == list(range(1, len(run) + 1))  # each iteration once
    # The diagnostics are recorded for every iteration: entropy of 4 actions in (0, ln 4].
    assert df["entropy"].between(0.01, np.log(4) + 1e-6).all()
    assert df["vf_explained_var"].notna().all()
    # --model-config reached the module of every trial.
    params = [json.loads(p.read_text()) for p in grid.glob("train_trial_*/params.json")]
    assert all(json.loads(p["model_config"]) == {"head_hiddens": [8], "core_skip": True} for p in params)


def test_resume_without_a_grid_is_a_clear_error(tmp_path, capsys):
    assert match.main(["--storage-path", str(tmp_path), "--experiment-name", "none", "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_results_of_earlier_sessions_are_not_run_again(tmp_path, capsys):
    """--results: runs that reached --timesteps in a kept match_curves.csv are left out of the
    grid, an unfinished one is run again, and the report covers the kept rows."""
    experiment = tmp_path / "exp"
    experiment.mkdir()
    _write_trial(experiment, "t0", "ur-lstm", 0, [0.3, 0.5, 0.9, 1.0])   # reaches 4,000 steps
    _write_trial(experiment, "t1", "lstm", 0, [0.3, 0.3])                # stopped at 2,000
    kept = tmp_path / "kept" / "match_curves.csv"
    match.write_report(experiment, kept.parent)
    assert match.finished_runs(str(kept), 4000) == {("ur-lstm", 30, 0)}
    assert match.finished_runs(str(kept), 2000) == {("ur-lstm", 30, 0), ("lstm", 30, 0)}
    # Everything already finished: no Ray, no training; the report is rebuilt from the rows.
    out = tmp_path / "report"
    argv = ["--cells", "ur-lstm,lstm", "--delays", "30", "--seeds", "1", "--timesteps", "2000",
            "--results", str(kept), "--storage-path", str(tmp_path / "runs"), "--out-dir", str(out)]
    assert match.main(argv) == 0
    assert "2 run(s) finished" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
    df = match.collect_curves(experiment)
    rebuilt = __import__("pandas").read_csv(out / "match_curves.csv")
    assert len(rebuilt) == len(df) == 6 and set(rebuilt["cell"]) == {"ur-lstm", "lstm"}
    with pytest.raises(ValueError, match="does not exist"):
        match.finished_runs(str(tmp_path / "nope.csv"), 10)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a match_curves.csv"):
        match.finished_runs(str(tmp_path / "bad.csv"), 10)


def test_a_run_in_the_experiment_replaces_its_kept_rows(tmp_path):
    kept_exp, new_exp = tmp_path / "old", tmp_path / "new"
    kept_exp.mkdir()
    new_exp.mkdir()
    _write_trial(kept_exp, "t0", "lstm", 0, [0.3, 0.3])
    _write_trial(kept_exp, "t1", "ur-lstm", 0, [0.3, 0.9, 1.0])
    match.write_report(kept_exp, tmp_path / "kept")
    _write_trial(new_exp, "t0", "lstm", 0, [0.3, 0.4, 0.5, 0.7])  # lstm seed 0, run again in full
    match.write_report(new_exp, tmp_path / "out", str(tmp_path / "kept" / "match_curves.csv"))
    df = __import__("pandas").read_csv(tmp_path / "out" / "match_curves.csv")
    assert len(df[df["cell"] == "lstm"]) == 4 and df[df["cell"] == "lstm"]["env_steps"].max() == 4000
    assert len(df[df["cell"] == "ur-lstm"]) == 3


@pytest.mark.parametrize("text, seeds", [("3", [0, 1, 2]), ("1", [0]), ("1,2", [1, 2]), ("4,", [4]), (" 2 , 0", [2, 0])])
def test_seeds_is_a_count_or_a_list(text, seeds):
    assert match.seed_list(text) == seeds


@pytest.mark.parametrize("text", ["0", "", "a", "1,1", "-1", "1,x"])
def test_bad_seeds_are_a_clear_error(text, tmp_path, capsys):
    with pytest.raises(ValueError, match="--seeds must be a count"):
        match.seed_list(text)
    assert match.main(["--seeds", text, "--storage-path", str(tmp_path)]) == 2
    assert "--seeds must be a count" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing started


def test_kept_rows_before_an_extended_runs_first_iteration_stay(tmp_path):
    """--results with an --extend-from experiment: the run's curve is the kept start followed by
    the experiment's iterations; a run started over replaces its kept rows."""
    old = tmp_path / "old"
    old.mkdir()
    _write_trial(old, "t0", "ur-lstm", 0, [0.1, 0.2, 0.3])
    _write_trial(old, "t1", "lstm", 0, [0.1, 0.1])
    match.write_report(old, tmp_path / "kept")
    new = tmp_path / "new"
    new.mkdir()
    trial = new / "t0"
    trial.mkdir()
    (trial / "params.json").write_text(json.dumps({"cell": "ur-lstm", "delay": 30, "seed": 0}))
    (trial / "result.json").write_text("".join(
        json.dumps({"training_iteration": i, "env_steps": i * 1000, "train_success": 0.5}) + "\n" for i in (4, 5)))
    _write_trial(new, "t1", "lstm", 0, [0.4])
    match.write_report(new, tmp_path / "out", str(tmp_path / "kept" / "match_curves.csv"))
    df = __import__("pandas").read_csv(tmp_path / "out" / "match_curves.csv")
    ur = df[df["cell"] == "ur-lstm"]
    assert list(ur["iteration"]) == [1, 2, 3, 4, 5]
    assert list(ur["train_success"]) == [0.1, 0.2, 0.3, 0.5, 0.5]
    assert list(df[df["cell"] == "lstm"]["train_success"]) == [0.4]


def test_extend_from_continues_a_finished_grid(tmp_path, capsys):
    """A real one-run grid of 1,400 steps, extended to 2,800 by a second experiment: the
    iterations and env steps go on from the first grid's last checkpoint, the curve holds
    both parts once, and bad extensions fail before Ray starts."""
    common = ["--cells", "ur-lstm", "--delays", "5", "--seeds", "1", "--num-envs", "2", "--hidden-size", "16",
              "--num-epochs", "1", "--train-batch-size", "280", "--minibatch-size", "70", "--eval-interval", "0",
              "--storage-path", str(tmp_path), "--model-config", '{"head_hiddens": [8]}']
    assert match.main(common + ["--timesteps", "1400", "--experiment-name", "short"]) == 0
    first = match.collect_curves(tmp_path / "short")
    assert first["env_steps"].max() == 1400 and list(first["iteration"]) == [1, 2, 3, 4, 5]

    # Different agent settings, a seed that the grid does not hold, no more steps: clear errors.
    for extra, message in ((["--timesteps", "2800", "--lr", "0.01"], "lr 0.001 there, 0.01 here"),
                           (["--timesteps", "2800", "--seeds", "1,"], "no trial of cell ur-lstm, delay 5, seed 1"),
                           (["--timesteps", "1400"], "already at 1,400 env steps")):
        capsys.readouterr()
        assert match.main(common + extra + ["--extend-from", str(tmp_path / "short"),
                                            "--experiment-name", "bad"]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()

    assert match.main(common + ["--timesteps", "2800", "--extend-from", str(tmp_path / "short"),
                                "--experiment-name", "long"]) == 0
    own = [json.loads(line) for trial in (tmp_path / "long").glob("train_trial_*")
           for line in (trial / "result.json").read_text().splitlines()]
    assert [r["match_iteration"] for r in own] == [6, 7, 8, 9, 10]  # went on, did not start over
    assert [r["env_steps"] for r in own] == [1680, 1960, 2240, 2520, 2800]
    df = match.collect_curves(tmp_path / "long")
    assert list(df["iteration"]) == list(range(1, 11)) and df["env_steps"].is_monotonic_increasing
    assert df["train_success"].iloc[:5].tolist() == first["train_success"].tolist()


def test_a_report_never_silently_drops_runs_of_the_csv_it_replaces(tmp_path, capsys):
    """A grid that ends without --results, after another grid has written the same out dir
    (two queue workers), must not erase that grid's runs: the old file is kept beside it."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _write_trial(first, "t0", "ur-lstm", 0, [0.3, 0.5, 0.9])
    _write_trial(second, "t0", "lstm", 0, [0.3, 0.3, 0.4])
    out = tmp_path / "out"
    match.write_report(first, out)
    capsys.readouterr()
    match.write_report(second, out)  # no --results: the report holds lstm alone
    kept = sorted(out.glob("match_curves.*.csv"))
    assert len(kept) == 1
    pd = __import__("pandas")
    assert set(pd.read_csv(kept[0])["cell"]) == {"ur-lstm"}
    assert set(pd.read_csv(out / "match_curves.csv")["cell"]) == {"lstm"}
    err = capsys.readouterr().err
    assert "ur-lstm delay 30 seed 0" in err and str(kept[0]) in err
    # Merging them back, as the message says, gives both runs and moves nothing aside.
    match.write_report(second, out, str(kept[0]))
    assert set(pd.read_csv(out / "match_curves.csv")["cell"]) == {"ur-lstm", "lstm"}
    assert len(list(out.glob("match_curves.*.csv"))) == 1
    # A report that keeps every run (the same grid again) replaces the file in place.
    match.write_report(second, out, str(out / "match_curves.csv"))
    assert len(list(out.glob("match_curves.*.csv"))) == 1
