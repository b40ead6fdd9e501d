"""What crash reports cost a passing test: the same runs with them on and off.

Crash reports (``docs/debugging.md``) cost a passing test only what is done
before anything crashes: each linked object's functions are recorded in the
map of JIT code (``csrc/jit_code_map.h``), and the handler is installed (once
per fork server; once per test in ``--orcjit-isolation=none``).
``PYTEST_ORCJIT_CRASH_REPORTS=off`` turns both off. Two figures, each with
crash reports on and off, side by side:

1. load: thread CPU time of one load + first call + close of the four-object
   benchmark library (``common.LIBRARY_SOURCES``), median over the loads;
2. per test: the test loop of ``bench_isolation``'s project of trivial orcjit
   tests, per test, with ``--orcjit-isolation=fork`` and ``none`` (best run of
   each setting; wall time, noisy on a shared machine).

    python benchmarks/bench_crash_handler.py [--loads 300] [--tests 200] [--repeat 3]

No assertions; the difference is expected to be within the noise (~0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import bench_isolation
from common import LIBRARY_SOURCES, compile_kernels, median, run_worker, serve_worker

OFF = {"PYTEST_ORCJIT_CRASH_REPORTS": "off"}
SETTINGS = {"on": {}, "off": OFF}


def load_worker(loads: str, *objects: str) -> dict:
    """In a worker: per-load thread CPU time (load, first call, close), in microseconds."""
    from pytest_orcjit import create_session

    session = create_session()
    times = []
    for _ in range(int(loads)):
        start = time.thread_time()
        lib = session.create_library()
        for obj in objects:
            lib.add(obj)
        lib.get_function("test_add")(1, 2)
        lib.close()
        times.append(time.thread_time() - start)
    return {"load_us": median(times[len(times) // 10 :]) * 1e6}  # the first loads warm up


def test_loop(root: Path, isolation: str, env: dict[str, str]) -> float:
    """Milliseconds per test of one run of the project, with ``env`` set."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        data = bench_isolation.run(root, isolation)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return data["loop"] / data["tests"] * 1e3


def figures(loads: int, tests: int, repeat: int) -> list[tuple[str, float, float, str]]:
    """(figure, with crash reports, without, unit) rows."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_crash_") as tmp:
        root = Path(tmp)
        objects = [str(o) for o in compile_kernels(LIBRARY_SOURCES, root / "objects")]
        load = {name: [] for name in SETTINGS}  # type: dict[str, list[float]]
        for _ in range(repeat):
            for name, env in SETTINGS.items():
                args = [str(loads), *objects]
                load[name].append(run_worker(Path(__file__), args, env)["load_us"])
        rows.append(("load + call + close, 4 objects", min(load["on"]), min(load["off"]), "us"))
        project = root / "project"
        project.mkdir()
        bench_isolation.make_project(project, tests)
        test_loop(project, "none", {})  # warm the compile cache; not timed
        for isolation in ("fork", "none"):
            best = {name: float("inf") for name in SETTINGS}
            for _ in range(repeat):
                for name, env in SETTINGS.items():
                    best[name] = min(best[name], test_loop(project, isolation, env))
            figure = f"trivial test, --orcjit-isolation={isolation}"
            rows.append((figure, best["on"] * 1e3, best["off"] * 1e3, "us"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=300)
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = figures(args.loads, args.tests, args.repeat)
    print(f"crash reports on against off (best of {args.repeat} runs each)")
    line = "{:40}{:>14}{:>14}{:>14}"
    print(line.format("", "on", "off", "on - off"))
    for figure, on, off, unit in rows:
        cells = (f"{on:.1f} {unit}", f"{off:.1f} {unit}", f"{on - off:+.1f} {unit}")
        print(line.format(figure, *cells))


if __name__ == "__main__":
    if not serve_worker(load_worker):
        sys.path.insert(0, str(Path(__file__).parent))
        main()
