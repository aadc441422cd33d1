"""The target check of benchmarks/cells.py: what "targets met" in the README rests on."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest


def _load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark("cells")


def _row(module, shape, forward, train, threads=1):
    return {"threads": threads, "shape": shape, "module": module, "forward_ratio": forward, "train_ratio": train}


def test_targets_follow_the_issue():
    rows = [
        _row("torch.nn.LSTM", "lm", 1.0, 1.0),  # references are not checked
        _row("ur-lstm", "lm", 0.79, 1.0),  # training met, forward below 0.8
        _row("ur-lstm", "rl", 0.8, 0.99, threads=2),  # forward met, training below 1.0
        _row("ur-gru", "lm", 0.5, 0.8),  # other presets: only training, >= 0.8
        _row("gru", "smnist", 2.0, 0.79),
        _row("lstm", "step", 0.99, 5.0),  # one step: forward >= 1.0, training not a target
        _row("ur-gru", "step", 1.0, 0.1),
    ]
    checks = {(c["module"], c["shape"], c["threads"], c["measure"]): c["met"] for c in bench.check_targets(rows)}
    assert checks == {
        ("ur-lstm", "lm", 1, "train"): True,
        ("ur-lstm", "lm", 1, "forward"): False,
        ("ur-lstm", "rl", 2, "train"): False,
        ("ur-lstm", "rl", 2, "forward"): True,
        ("ur-gru", "lm", 1, "train"): True,
        ("gru", "smnist", 1, "train"): False,
        ("lstm", "step", 1, "forward"): False,
        ("ur-gru", "step", 1, "forward"): True,
    }


def test_the_gpu_target_is_ur_lstm_training_at_the_sequence_shapes():
    rows = [
        _row("torch.nn.LSTM", "lm", 1.0, 1.0),
        _row("ur-lstm", "smnist", 0.1, 0.8),  # met: forward is no GPU target
        _row("ur-lstm", "lm", 2.0, 0.79),
        _row("ur-lstm", "step", 0.1, 0.1),  # one step: no GPU target
        _row("ur-gru", "rl", 0.1, 0.1),  # other presets: measured, no target
    ]
    checks = {(c["shape"], c["measure"]): (c["target"], c["met"]) for c in bench.check_cuda_targets(rows)}
    assert checks == {("smnist", "train"): (0.8, True), ("lm", "train"): (0.8, False)}


def test_gemm_benchmark_runs_checks_its_kernels_and_records_the_target(tmp_path):
    """benchmarks/gemm.py end to end with few calls: both kernels agree with torch.addmm (it
    asserts that), and the JSON carries the CPU and the packed-vs-addmm target."""
    from memory_agents.cells import _native

    if _native._load() is None:
        pytest.skip(f"no C kernels: {_native.backend_reason()}")
    gemm = _load_benchmark("gemm")
    out = tmp_path / "gemm.json"
    gemm.main(["--calls", "3", "--repeats", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert [(r["M"], r["K"], r["N"]) for r in result["rows"]] == gemm.SHAPES
    assert all(r["packed_gflops"] > 0 and r["max_abs_error_packed"] < 1e-2 for r in result["rows"])
    assert isinstance(result["meta"]["target_met"], bool) and result["meta"]["cpu_capability"]
