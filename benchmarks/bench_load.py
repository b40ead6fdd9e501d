"""Figure 1: load + first call + drop of a four-object library, ours against the reference.

The library is four C++ objects from ``tests/kernels`` (TVM-FFI exports, static
constructors, strings, tensors) compiled with clang++-22 -O2. Each package runs
in its own worker process with one session; a load is ``session.load_module``
of the four paths, one call of ``test_add`` and dropping the module (static
destructors run, JIT memory is released). The reference is apache-tvm-ffi-orcjit
(module ``tvm_ffi_orcjit``) on the same objects and paths.

    python benchmarks/bench_load.py [--loads 300] [--repeat 3]

Per load the worker records wall time and the thread's CPU time (thread_time:
what the load costs, whatever else the machine runs); the figure is the median
over all loads of all repeats, after a few warm-up loads. No assertions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import (
    LIBRARY_SOURCES,
    Row,
    compile_kernels,
    median,
    print_table,
    ratio,
    run_worker,
    serve_worker,
)

PACKAGES = {"ours": "pytest_orcjit", "reference": "tvm_ffi_orcjit"}
WARM_UP = 10


def worker(package: str, loads: str, *objects: str) -> dict:
    """Time ``loads`` load + call + drop cycles with ``package`` in this process."""
    module = __import__(PACKAGES[package])
    session = module.ExecutionSession()
    paths = list(objects)
    wall, cpu = [], []
    for i in range(WARM_UP + int(loads)):
        w, c = time.perf_counter(), time.thread_time()
        lib = session.load_module(paths)
        lib.test_add(1, 2)
        del lib
        c, w = time.thread_time() - c, time.perf_counter() - w
        if i >= WARM_UP:
            wall.append(w)
            cpu.append(c)
    return {"wall": wall, "cpu": cpu}


def measure(loads: int, repeat: int, tmp: Path) -> dict[str, dict[str, float]]:
    """Median wall and CPU milliseconds per load of each package, workers alternating."""
    objects = [str(path) for path in compile_kernels(LIBRARY_SOURCES, tmp)]
    samples: dict[str, dict[str, list[float]]] = {p: {"wall": [], "cpu": []} for p in PACKAGES}
    for _ in range(repeat):
        for package in PACKAGES:
            data = run_worker(Path(__file__), [package, str(loads), *objects])
            for key in ("wall", "cpu"):
                samples[package][key] += data[key]
    return {
        package: {key: median(values) * 1e3 for key, values in by_key.items()}
        for package, by_key in samples.items()
    }


def figures(loads: int = 300, repeat: int = 3) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        result = measure(loads, repeat, Path(tmp))
    ours, ref = result["ours"], result["reference"]
    label = f"1. load+call+drop, 4 objects ({loads * repeat} loads)"
    return [
        Row(
            f"{label}, CPU ms",
            f"{ours['cpu']:.3f}",
            f"{ref['cpu']:.3f}",
            ratio(ours["cpu"], ref["cpu"]),
            "<= 0.80x",
        ),
        Row(
            f"{label}, wall ms",
            f"{ours['wall']:.3f}",
            f"{ref['wall']:.3f}",
            ratio(ours["wall"], ref["wall"]),
            "<= 0.80x",
        ),
    ]


def main() -> None:
    if serve_worker(worker):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_table(figures(args.loads, args.repeat))


if __name__ == "__main__":
    main()
