"""The recurrent product alone: why the C loops carry their own GEMM.

GFLOP/s of ``C = Cin + A @ W^T`` at the skinny shapes of a recurrence (A: B x H hidden states,
W: G*H x H), for PyTorch's ``torch.addmm`` (MKL here) and for the two kernels of
``memory_agents/cells/sequence.c``: the register-blocked GEMM on weights packed once per call
(what the sequence loops use) and the dot-product GEMM on unpacked weights (the one-step path).
Packing is timed separately: the loops pay it once per call, not per step.

    OMP_NUM_THREADS=1 python benchmarks/gemm.py            # ~20 s; writes benchmarks/results/gemm.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from memory_agents.cells import _native  # noqa: E402

SHAPES = [(8, 256, 1024), (32, 256, 1024), (64, 256, 1024), (32, 256, 768), (32, 1024, 256)]  # (M, K, N)


def _time(fn, calls: int, repeats: int) -> float:
    """Median seconds per call over `repeats` timed batches of `calls` calls, after warm-up."""
    for _ in range(calls // 10 + 1):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


#: The packed kernel against MKL's addmm, per shape: it is only worth having where it is not slower
#: (0.8 leaves room for timing noise on a shared machine).
TARGET_VS_ADDMM = 0.8


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "gemm.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lib = _native._load()
    if lib is None:
        raise SystemExit(f"the C kernels are not available: {_native.backend_reason()}")
    ptr, long_ = ctypes.c_void_p, ctypes.c_long
    lib.gemm.argtypes = [ptr, long_, ptr, long_, long_, long_, ptr, long_, ptr, long_]
    lib.gemm_dot.argtypes = [ptr, long_, ptr, long_, long_, long_, long_, ptr, long_, ptr, long_]
    lib.gemm.restype = lib.gemm_dot.restype = None
    print(f"{_native.backend_reason()}\n")
    print(f"{'M x K x N':>16} {'torch.addmm':>12} {'packed':>9} {'dot':>9}  GFLOP/s   (pack once: us)")
    rows = []
    g = torch.Generator().manual_seed(0)
    for M, K, N in SHAPES:
        A, W, Cin = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g), torch.randn(M, N, generator=g)
        C = torch.empty(M, N)
        packed = _native.pack_transposed(W)
        expected = torch.addmm(Cin, A, W.t())
        # Checked once (float32, CPU, contiguous), then the bare addresses: the timing excludes the checks.
        a, p, w, cin, c = (_native._ptr(t) for t in (A, packed, W, Cin, C))
        lib.gemm(a, K, p, M, N, K, cin, N, c, N)
        error_packed = (C - expected).abs().max().item()
        lib.gemm_dot(a, K, w, K, M, N, K, cin, N, c, N)
        error_dot = (C - expected).abs().max().item()
        flops = 2.0 * M * K * N
        seconds = {
            "torch_addmm": _time(lambda: torch.addmm(Cin, A, W.t(), out=C), args.calls, args.repeats),
            "packed": _time(lambda: lib.gemm(a, K, p, M, N, K, cin, N, c, N), args.calls, args.repeats),
            "dot": _time(lambda: lib.gemm_dot(a, K, w, K, M, N, K, cin, N, c, N), args.calls, args.repeats),
        }
        pack_us = _time(lambda: _native.pack_transposed(W), args.calls // 3 + 1, args.repeats) * 1e6
        row = {"M": M, "K": K, "N": N, **{f"{k}_gflops": round(flops / v / 1e9, 1) for k, v in seconds.items()},
               "pack_us": round(pack_us, 1), "max_abs_error_packed": error_packed, "max_abs_error_dot": error_dot}
        rows.append(row)
        print(f"{f'{M} x {K} x {N}':>16} {row['torch_addmm_gflops']:>12.1f} {row['packed_gflops']:>9.1f} "
              f"{row['dot_gflops']:>9.1f}            ({pack_us:.0f})")
        assert max(error_packed, error_dot) < 1e-3 * K ** 0.5, "a kernel disagrees with torch.addmm"
    # The packed kernel exists because it beats MKL here; below addmm it is a regression (once:
    # GCC's code for memcpy loads ran the AVX2 build at a tenth of its speed, README "Speed").
    slow = [f"{r['M']}x{r['K']}x{r['N']}" for r in rows if r["packed_gflops"] < TARGET_VS_ADDMM * r["torch_addmm_gflops"]]
    print(f"\ntarget: packed >= {TARGET_VS_ADDMM}x torch.addmm at every shape: "
          + ("met" if not slow else f"NOT met at {', '.join(slow)}"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": 1, "backend": _native.backend_reason(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": _cpu_model(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "target_met": not slow}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
