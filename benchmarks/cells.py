"""Throughput of every cell preset against torch.nn.LSTM / torch.nn.GRU, float32, on the CPU or a GPU.

Tokens per second (batch x time steps) for the forward pass (no grad) and for forward+backward,
at three shapes (sequential MNIST, language model, RL with resets) and one env-runner step
(T = 1, B = 8), medians over repeats after warm-up, all in one process. On the CPU at 1 and 2
torch threads; on a GPU (``--device cuda``) against torch's modules on cuDNN, where ours run the
Triton kernels (or cuDNN themselves, for ``lstm`` / ``gru`` without resets).

    OMP_NUM_THREADS=1 python benchmarks/cells.py                  # everything (~15-25 min)
    python benchmarks/cells.py --presets ur-lstm,lstm --shapes lm --threads 1 --repeats 3
    python benchmarks/cells.py --device cuda                      # every preset on the GPU

Writes ``benchmarks/results/cells.json`` (``cells_cuda.json`` on a GPU) and prints a table with the
ratio to the torch module of the same family, timed interleaved with it (the ratio is the median
of per-repeat ratios, robust to load from other processes; the torch row shows its first pairing),
then the target check. ``torch.nn.LSTM`` cannot reset its state inside a sequence, so at the RL
shape it runs without resets (ours with them): the comparison favours torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from memory_agents.cells import available_cells, build_rnn  # noqa: E402
from memory_agents.cells import _native, dispatch  # noqa: E402


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    steps: int
    inputs: int
    hidden: int
    resets: bool


SHAPES = {
    "smnist": Shape("smnist", 64, 784, 1, 256, False),
    "lm": Shape("lm", 64, 128, 256, 256, False),
    "rl": Shape("rl", 32, 128, 64, 256, True),
    "step": Shape("step", 8, 1, 64, 256, False),
}
# Only with --cpu-as-cuda: the GPU code path on CPU tensors in Triton's interpreter (the tests).
TINY_SHAPES = {
    "tiny": Shape("tiny", 3, 3, 5, 7, True),
    "tiny-step": Shape("tiny-step", 3, 1, 5, 7, False),
}


def _workloads(module: torch.nn.Module, shape: Shape, ours: bool, device: str = "cpu", inner: int | None = None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape.steps, shape.batch, shape.inputs, generator=g).to(device)
    resets = (torch.rand(shape.steps, shape.batch, generator=g) < 1 / 60) if (shape.resets and ours) else None
    if resets is not None:
        resets = resets.to(device)
    kwargs = {"resets": resets} if resets is not None else {}
    # A single step is microseconds: time a batch of calls so the clock resolution doesn't matter.
    if inner is None:
        inner = 200 if shape.steps == 1 else 1

    def forward():
        with torch.no_grad():
            for _ in range(inner):
                module(x, **kwargs)

    def train():
        for _ in range(inner):
            module.zero_grad(set_to_none=True)
            y, _ = module(x, **kwargs)
            y.sum().backward()

    return {"forward": forward, "train": train}, inner


def _no_sync() -> None:
    pass


def _time(fn, sync=_no_sync) -> float:
    """Seconds of ``fn``; ``sync`` waits for the device (GPU work is asynchronous)."""
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def measure_pair(ours: torch.nn.Module, reference: torch.nn.Module, shape: Shape, repeats: int,
                 device: str = "cpu", sync=_no_sync, warmup: int = 2, inner: int | None = None) -> tuple[dict, dict]:
    """Time ours and the torch reference *interleaved* (A B A B ...), so that load from other
    processes on a shared machine hits both alike; medians over the repeats after warm-up."""
    tokens = shape.steps * shape.batch
    results = ({}, {})
    for mode in ("forward", "train"):
        (work_a, inner_a), (work_b, _) = (_workloads(ours, shape, True, device, inner),
                                          _workloads(reference, shape, False, device, inner))
        for _ in range(warmup):  # allocator, oneDNN primitive caches, native library, Triton's compiles
            work_a[mode]()
            work_b[mode]()
        times_a, times_b = [], []
        for _ in range(repeats):
            times_a.append(_time(work_a[mode], sync) / inner_a)
            times_b.append(_time(work_b[mode], sync) / inner_a)
        for result, times in zip(results, (times_a, times_b)):
            result[f"{mode}_tokens_per_s"] = tokens / statistics.median(times)
            result[f"{mode}_ms"] = statistics.median(times) * 1e3
        results[0][f"{mode}_ratio"] = statistics.median(b / a for a, b in zip(times_a, times_b))
    return results


def _backend(module, shape: Shape) -> str:
    """What a module of ours runs at ``shape`` (with resets, cuDNN's presets run Triton)."""
    backend = module.backend()
    if backend == "cudnn" and shape.resets:
        backend = dispatch.choose(*module._operands())[0]
    return backend


def run(presets, shapes, threads_list, repeats, on_row=lambda rows: None, device: str = "cpu", sync=_no_sync,
        warmup: int = 2, inner: int | None = None) -> list[dict]:
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        for shape_name in shapes:
            shape = SHAPES.get(shape_name) or TINY_SHAPES[shape_name]
            torch.manual_seed(0)
            baselines = {
                "lstm": torch.nn.LSTM(shape.inputs, shape.hidden).to(device),
                "gru": torch.nn.GRU(shape.inputs, shape.hidden).to(device),
            }
            seen_baseline = set()
            for preset in presets:
                module = build_rnn(preset, shape.inputs, shape.hidden).to(device)
                family = "gru" if module.config.family == "gru" else "lstm"
                result, ref = measure_pair(module, baselines[family], shape, repeats, device, sync, warmup, inner)
                if family not in seen_baseline:
                    seen_baseline.add(family)
                    rows.append({"threads": threads, "shape": shape_name, "module": f"torch.nn.{family.upper()}",
                                 "forward_tokens_per_s": ref["forward_tokens_per_s"],
                                 "train_tokens_per_s": ref["train_tokens_per_s"],
                                 "forward_ratio": 1.0, "train_ratio": 1.0})
                    print(_format(rows[-1]), flush=True)
                rows.append({"threads": threads, "shape": shape_name, "module": preset, **result,
                             "backend": _backend(module, shape),
                             "reference_forward_tokens_per_s": ref["forward_tokens_per_s"],
                             "reference_train_tokens_per_s": ref["train_tokens_per_s"]})
                print(_format(rows[-1]), flush=True)
                on_row(rows)
    return rows


def _format(row: dict) -> str:
    return (f"{row['threads']:>2}  {row['shape']:<7} {row['module']:<16} "
            f"fwd {row['forward_tokens_per_s']:>10,.0f} tok/s ({row['forward_ratio']:.2f}x)   "
            f"fwd+bwd {row['train_tokens_per_s']:>10,.0f} tok/s ({row['train_ratio']:.2f}x)"
            + (f"   [{row['backend']}]" if "backend" in row else ""))


def readme_tables(rows: list[dict]) -> str:
    """Compact pivot for the README: one table per thread count, ratios to torch per shape."""
    out = []
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    for threads in sorted({r["threads"] for r in rows}):
        sel = [r for r in rows if r["threads"] == threads]
        head = "| module | " + " | ".join(f"{s} fwd | {s} fwd+bwd" for s in shapes) + " |"
        out += [f"**{threads} thread{'s' if threads > 1 else ''}** — tokens/s of the torch modules, then ratios to them "
                "(≥ 1 is faster):", "", head, "|---|" + "---:|" * (2 * len(shapes))]
        for module in dict.fromkeys(r["module"] for r in sel):
            cells = []
            for shape in shapes:
                match = [r for r in sel if r["module"] == module and r["shape"] == shape]
                if not match:
                    cells += ["", ""]
                elif module.startswith("torch."):
                    cells += [f"{match[0]['forward_tokens_per_s']:,.0f}", f"{match[0]['train_tokens_per_s']:,.0f}"]
                else:
                    cells += [f"{match[0]['forward_ratio']:.2f}×", f"{match[0]['train_ratio']:.2f}×"]
            out.append(f"| {module} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def check_targets(rows: list[dict]) -> list[dict]:
    """The issue's targets, each as a row with the measured ratio and whether it is met:
    ``ur-lstm`` training >= 1.0x and forward >= 0.8x of torch.nn.LSTM at the sequence shapes,
    every other preset training >= 0.8x of its family's torch module, and a single step
    (forward, T = 1) no slower than the torch module (>= 1.0x)."""
    checks = []
    for r in rows:
        if r["module"].startswith("torch."):
            continue
        if r["shape"] == "step":
            wanted = [("forward", 1.0)]
        elif r["module"] == "ur-lstm":
            wanted = [("train", 1.0), ("forward", 0.8)]
        else:
            wanted = [("train", 0.8)]
        for measure, target in wanted:
            ratio = r[f"{measure}_ratio"]
            checks.append({"threads": r["threads"], "shape": r["shape"], "module": r["module"], "measure": measure,
                           "ratio": round(ratio, 3), "target": target, "met": ratio >= target})
    return checks


# The GPU target of the issue: ur-lstm training at >= 0.8x torch.nn.LSTM on cuDNN.
CUDA_TARGET = 0.8


def check_cuda_targets(rows: list[dict]) -> list[dict]:
    """On a GPU: ``ur-lstm`` training >= 0.8x of ``torch.nn.LSTM`` (cuDNN) at each sequence shape."""
    return [{"threads": r["threads"], "shape": r["shape"], "module": r["module"], "measure": "train",
             "ratio": round(r["train_ratio"], 3), "target": CUDA_TARGET, "met": r["train_ratio"] >= CUDA_TARGET}
            for r in rows if r["module"] == "ur-lstm" and r["shape"] not in ("step", "tiny-step")]


def print_targets(checks: list[dict]) -> None:
    met = sum(c["met"] for c in checks)
    print(f"targets met: {met}/{len(checks)}")
    for c in checks:
        if not c["met"]:
            print(f"  NOT MET: {c['threads']} thread(s) {c['shape']} {c['module']} {c['measure']} "
                  f"{c['ratio']:.2f}x < {c['target']:.1f}x")


def _cuda_setup(cpu_as_cuda: bool):
    """(device, sync, meta) for --device cuda. With ``cpu_as_cuda`` (the tests), the same code
    path on CPU tensors: the dispatch's device test says CUDA, and the Triton kernels run in
    Triton's interpreter (TRITON_INTERPRET=1 must be set before triton is imported)."""
    if cpu_as_cuda:
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("--cpu-as-cuda runs the Triton kernels in the interpreter: set TRITON_INTERPRET=1")
        dispatch.is_cuda = lambda t: True
        return "cpu", _no_sync, {"gpu": "none: --cpu-as-cuda (Triton's interpreter on CPU tensors)"}
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available to torch")
    meta = {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}
    return "cuda", torch.cuda.synchronize, meta


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=",".join(available_cells()), help="comma-separated presets")
    parser.add_argument("--shapes", default="smnist,lm,rl,step", help=f"comma-separated, from {list(SHAPES)}")
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (CPU only)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: against torch's modules on cuDNN (writes cells_cuda.json)")
    parser.add_argument("--out", default=None, help="JSON to write (default benchmarks/results/cells[_cuda].json)")
    parser.add_argument("--readme-from", metavar="JSON", help="print the README tables of an earlier run and exit")
    # For the tests: the --device cuda code path on CPU tensors, tiny shapes, few calls.
    parser.add_argument("--cpu-as-cuda", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.readme_from:
        data = json.loads(Path(args.readme_from).read_text())
        rows = data["rows"]
        print(readme_tables(rows))
        cuda = data.get("meta", {}).get("device") == "cuda"
        print_targets(check_cuda_targets(rows) if cuda else check_targets(rows))
        return
    cuda = args.device == "cuda"
    if args.cpu_as_cuda and not cuda:
        parser.error("--cpu-as-cuda goes with --device cuda")
    presets = [p for p in args.presets.split(",") if p]
    shapes = [s for s in args.shapes.split(",") if s]
    allowed = {**SHAPES, **TINY_SHAPES} if args.cpu_as_cuda else SHAPES
    for s in shapes:
        if s not in allowed:
            parser.error(f"unknown shape {s!r}; choose from {list(SHAPES)}")
    meta = {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "repeats": args.repeats,
            "shapes": {k: asdict(allowed[k]) for k in shapes},
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if cuda:
        device, sync, gpu = _cuda_setup(args.cpu_as_cuda)
        threads = [torch.get_num_threads()]  # the host's threads only launch kernels
        import triton  # noqa: F401  (the [gpu] extra: without it every non-cuDNN row times PyTorch ops)

        meta.update(device="cuda", triton=triton.__version__, **gpu)
        print(f"device: cuda ({gpu['gpu']}), triton {triton.__version__}, torch {torch.__version__}", flush=True)
        checker = check_cuda_targets
    else:
        device, sync = "cpu", _no_sync
        threads = [int(t) for t in args.threads.split(",")]
        meta.update(device="cpu", backend=_native.backend_name())
        print(f"backend: {_native.backend_name()} ({_native.backend_reason()})", flush=True)
        checker = check_targets
    out = Path(args.out or Path(__file__).with_name("results") / ("cells_cuda.json" if cuda else "cells.json"))
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(rows):  # after every row: an interrupted run keeps what it measured
        out.write_text(json.dumps({"meta": meta, "rows": rows, "targets": checker(rows)}, indent=1))

    rows = run(presets, shapes, threads, args.repeats, on_row=save, device=device, sync=sync, warmup=args.warmup,
               inner=args.calls)
    print()
    print(readme_tables(rows))
    if cuda:
        print(f"GPU target: ur-lstm training >= {CUDA_TARGET}x torch.nn.LSTM on cuDNN")
    print_targets(checker(rows))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
