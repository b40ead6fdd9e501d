"""Figure 1: load + first call + drop of a library, ours against the reference.

Two libraries: four small C++ objects from ``tests/kernels`` (TVM-FFI exports,
static constructors, strings, tensors) compiled with clang++-22 -O2, and
example_project's five kernel objects (``kernels/*.cc``, ``kernels/*.c``)
compiled as its plugin compiles them by default (clang++-22 -std=c++20 -fPIC,
no -O: -O0, 1.2 MB of objects, most of it the tvm-ffi inline functions each
object repeats). Each package runs in its own worker process with one session; a
load is ``session.load_module`` of the paths, one call (``test_add(1, 2)``,
``join_strings(["a", "b"], ",")``) and dropping the module (static destructors
run, JIT memory is released). The reference is apache-tvm-ffi-orcjit (module
``tvm_ffi_orcjit``) on the same objects and paths.

    python benchmarks/bench_load.py [--loads 300] [--repeat 3]

Per load the worker records wall time and the thread's CPU time (thread_time:
what the load costs, whatever else the machine runs); the figure is the median
over all loads of all repeats, after a few warm-up loads. No assertions.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from common import (
    LIBRARY_SOURCES,
    ROOT,
    Row,
    compile_kernels,
    include_flags,
    median,
    print_table,
    ratio,
    run_worker,
    serve_worker,
)

PACKAGES = {"ours": "pytest_orcjit", "reference": "tvm_ffi_orcjit"}
WARM_UP = 10
EXAMPLE_PROJECT = ROOT / "example_project" / "kernels"
CALLS = {
    "tiny": lambda lib: lib.test_add(1, 2),
    "example": lambda lib: lib.join_strings(["a", "b"], ","),
}
"""The first call of each library."""


def compile_example_project(out_dir: Path) -> list[Path]:
    """example_project's kernel objects, compiled as its plugin does with the default flags."""
    out_dir.mkdir(parents=True, exist_ok=True)
    objects = []
    for source in sorted(EXAMPLE_PROJECT.glob("*.c*")):
        front = ["clang-22"] if source.suffix == ".c" else ["clang++-22", "-std=c++20"]
        target = out_dir / (source.name + ".o")
        command = [*front, *include_flags(), "-fPIC", "-c", str(source), "-o", str(target)]
        subprocess.run(command, check=True)
        objects.append(target)
    return objects


def worker(package: str, loads: str, library: str, *objects: str) -> dict:
    """Time ``loads`` load + call + drop cycles of ``library`` with ``package`` in this process."""
    module = __import__(PACKAGES[package])
    session = module.ExecutionSession()
    paths = list(objects)
    call = CALLS[library]
    wall, cpu = [], []
    for i in range(WARM_UP + int(loads)):
        w, c = time.perf_counter(), time.thread_time()
        lib = session.load_module(paths)
        call(lib)
        del lib
        c, w = time.thread_time() - c, time.perf_counter() - w
        if i >= WARM_UP:
            wall.append(w)
            cpu.append(c)
    return {"wall": wall, "cpu": cpu}


def measure(
    loads: int, repeat: int, library: str, objects: list[Path]
) -> dict[str, dict[str, float]]:
    """Median wall and CPU milliseconds per load of each package, workers alternating."""
    paths = [str(path) for path in objects]
    samples: dict[str, dict[str, list[float]]] = {p: {"wall": [], "cpu": []} for p in PACKAGES}
    for _ in range(repeat):
        for package in PACKAGES:
            data = run_worker(Path(__file__), [package, str(loads), library, *paths])
            for key in ("wall", "cpu"):
                samples[package][key] += data[key]
    return {
        package: {key: median(values) * 1e3 for key, values in by_key.items()}
        for package, by_key in samples.items()
    }


def figures(loads: int = 300, repeat: int = 3) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        tiny = compile_kernels(LIBRARY_SOURCES, Path(tmp) / "tiny")
        example = compile_example_project(Path(tmp) / "example")
        rows = rows_of(
            measure(loads, repeat, "tiny", tiny),
            f"1. load+call+drop, 4 objects ({loads * repeat} loads)",
            "<= 0.80x",
        )
        label = f"1b. load+call+drop, example_project's 5 objects, -O0 ({loads * repeat} loads)"
        rows += rows_of(measure(loads, repeat, "example", example), label, "<= 0.30x")
    return rows


def rows_of(result: dict[str, dict[str, float]], label: str, goal: str) -> list[Row]:
    """The CPU and wall rows of one library's figure."""
    ours, ref = result["ours"], result["reference"]
    return [
        Row(
            f"{label}, CPU ms",
            f"{ours['cpu']:.3f}",
            f"{ref['cpu']:.3f}",
            ratio(ours["cpu"], ref["cpu"]),
            goal,
        ),
        Row(
            f"{label}, wall ms",
            f"{ours['wall']:.3f}",
            f"{ref['wall']:.3f}",
            ratio(ours["wall"], ref["wall"]),
            goal,
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
