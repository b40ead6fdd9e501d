"""Figure 2: the cost of calling a JIT-loaded function against the same function from a .so.

``math_ops.cc`` from ``tests/kernels`` is compiled once into a relocatable
object (loaded with pytest_orcjit) and once into a shared library with
``clang++ -shared`` (loaded with ``tvm_ffi.load_module``); a worker process
calls ``test_add(1, 2)`` through both, in alternating batches, and reports the
median thread CPU time per call over the batches. Both calls go through the
same tvm-ffi Python binding; the difference is what pytest-orcjit adds (a
closed-library check and the re-homing of returned objects). No assertions.

    python benchmarks/bench_call.py [--calls 20000] [--batches 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import Row, compile_kernels, median, print_table, ratio, run_worker, serve_worker

SOURCE = "math_ops.cc"


def worker(obj: str, shared: str, calls_arg: str, batches_arg: str) -> dict:
    import tvm_ffi

    import pytest_orcjit

    session = pytest_orcjit.ExecutionSession()
    functions = {
        "ours": session.load_module(obj).test_add,
        "shared": tvm_ffi.load_module(shared).test_add,
    }
    calls, batches = int(calls_arg), int(batches_arg)
    per_call: dict[str, list[float]] = {kind: [] for kind in functions}
    for _ in range(batches):
        for kind, function in functions.items():
            start = time.thread_time()
            for _ in range(calls):
                function(1, 2)
            per_call[kind].append((time.thread_time() - start) / calls)
    return per_call


def figures(calls: int = 20000, batches: int = 30) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench_call_") as tmp:
        (obj,) = compile_kernels([SOURCE], Path(tmp) / "obj")
        (shared,) = compile_kernels([SOURCE], Path(tmp) / "so", shared=True)
        data = run_worker(Path(__file__), [str(obj), str(shared), str(calls), str(batches)])
    ours, ref = median(data["ours"]) * 1e9, median(data["shared"]) * 1e9
    return [
        Row(
            "2. call test_add(1, 2) from Python, CPU ns (ref: clang++ -shared .so)",
            f"{ours:.0f}",
            f"{ref:.0f}",
            ratio(ours, ref),
            "<= 1.05x",
        )
    ]


def main() -> None:
    if serve_worker(worker):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args()
    print_table(figures(args.calls, args.batches))


if __name__ == "__main__":
    main()
