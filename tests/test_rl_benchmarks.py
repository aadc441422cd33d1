"""The RL benchmarks of issue 12: the throughput script's code path for one short iteration,
and the time-to-solve script's table and resume (no training)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import ray

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_throughput_runs_all_three_sides_and_reports_both_ratios(tmp_path):
    bench = load("rl_throughput")
    out = tmp_path / "rl_throughput.json"
    try:
        # Small batches (4 envs x 1 episode: one per learner and minibatch, 1 epoch): the code
        # path, not the numbers.
        bench.main(["--iterations", "1", "--warmup", "0", "--num-envs", "4", "--episodes-per-env", "1",
                    "--num-epochs", "1", "--out", str(out)])
    finally:
        ray.shutdown()
    report = json.loads(out.read_text())
    rates = report["env_steps_per_s"]
    assert set(rates) == {"shipped", "reference", "ours_at_reference"} and all(r > 0 for r in rates.values())
    assert report["shipped_vs_reference"] == pytest.approx(rates["shipped"] / rates["reference"], rel=1e-2)
    assert report["ours_at_reference_vs_reference"] == pytest.approx(
        rates["ours_at_reference"] / rates["reference"], rel=1e-2)
    settings = report["settings"]
    assert settings["reference"]["model_config"]["use_lstm"] is True
    assert settings["reference"]["model_config"]["vf_share_layers"] is True
    assert settings["ours_at_reference"]["model_config"]["conv_filters"] == [[16, 3, 1], [32, 3, 1]]
    assert settings["ours_at_reference"]["num_env_runners"] == 0
    # All three learn in their trainer process; the shipped config samples the next batch in
    # a remote env runner meanwhile (OverlapPPO), the other two sample, then learn.
    assert all(settings[s]["num_learners"] == 0 for s in settings)
    assert settings["shipped"]["algo"] == "OverlapPPO" and settings["shipped"]["num_env_runners"] == 1
    assert settings["reference"]["algo"] == settings["ours_at_reference"]["algo"] == "PPO"
    assert settings["shipped"]["train_batch_size"] == settings["shipped"]["train_batch_size_per_learner"] == 4 * 60
    # The reference's sequences are the episode (60); the shipped config adds the bootstrap step.
    assert settings["reference"]["model_config"]["max_seq_len"] == 60
    assert settings["ours_at_reference"]["model_config"]["max_seq_len"] == 60
    assert settings["shipped"]["model_config"]["max_seq_len"] == 61
    assert report["parameters"]["shipped"] == report["parameters"]["ours_at_reference"] == 407_909
    # One step forward of the shipped model: convs 2*27*16*25 + 2*144*32*25, linear 2*800*256,
    # heads 2*128*5, ur-lstm core 2*(512*256 + 512*128): 1,056,096 FLOPs.
    floor = report["floor"]["shipped"]
    assert floor["forward_mflop_per_step"] == pytest.approx(1.056, abs=1e-3)
    # 1 epoch here: (3 x 1 + 2) forwards per env step at 96 GFLOP/s.
    assert floor["floor_env_steps_per_s_one_core"] == pytest.approx(96e9 / (5 * 1_056_096), rel=1e-3)
    assert report["machine"]["cpu_count"] >= 1


def test_time_to_solve_table_and_resume(tmp_path, monkeypatch):
    bench = load("rl_time_to_solve")
    evals = [{"iteration": 5, "env_steps": 19_200, "seconds": 10.0, "success": 0.5},
             {"iteration": 10, "env_steps": 38_400, "seconds": 20.0, "success": 0.94},
             {"iteration": 15, "env_steps": 57_600, "seconds": 30.0, "success": 0.97}]
    assert bench.first_reach(evals, 0.9)["env_steps"] == 38_400
    assert bench.first_reach(evals, 0.99) is None

    def fake_seed(seed, args):
        minutes = {0: 3.0, 1: 4.5, 2: 6.0}[seed]
        return {"seed": seed, "steps_to_target": 300_000 + seed, "minutes_to_target": minutes,
                "env_steps_per_s": 2_000, "evaluations": evals}

    trained = []
    monkeypatch.setattr(bench, "train_seed", lambda seed, args: trained.append(seed) or fake_seed(seed, args))
    import memory_agents.ray_init

    monkeypatch.setattr(memory_agents.ray_init, "init_ray", lambda *a, **k: None)
    bench.main(["--seeds", "0,1", "--out-dir", str(tmp_path)])
    bench.main(["--seeds", "0,1,2", "--out-dir", str(tmp_path)])  # 0 and 1 are kept
    assert trained == [0, 1, 2]
    table = (tmp_path / "rl_time_to_solve.md").read_text()
    # Before: 403,200 / 691,200 / 633,600 steps at 1,000 steps/s = 6.7 / 11.5 / 10.6 minutes.
    assert "| 1 | 691,200 | 11.5 | 300,001 | 4.5 | 2,000 |" in table
    assert "| median | | 10.6 | | 4.5 | |" in table
    assert (tmp_path / "rl_time_to_solve.png").stat().st_size > 10_000
    # A seed that never reaches 90% counts as the slowest: median of (3.0, inf) and 4.5 -> 4.5.
    results = json.loads((tmp_path / "rl_time_to_solve.json").read_text())
    results["seeds"]["2"].update(steps_to_target=None, minutes_to_target=None)
    assert "| 2 | 633,600 | 10.6 | not reached | — | 2,000 |" in bench.table(results, 0.9)
    assert "| median | | 10.6 | | 4.5 | |" in bench.table(results, 0.9)
    results["seeds"]["1"].update(steps_to_target=None, minutes_to_target=None)
    assert "| median | | 10.6 | | not reached | |" in bench.table(results, 0.9)
