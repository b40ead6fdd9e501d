"""Run every benchmark figure of pytest-orcjit and print one table.

    python benchmarks/run.py [--quick] [--only load,call,...]

Figures (each module's docstring says exactly what it measures):

1. ``bench_load``: load + first call + drop of a four-object library and of
   example_project's five -O0 objects, median thread CPU time and wall time, against
   apache-tvm-ffi-orcjit, each in its own process;
2. ``bench_call``: calling a JIT-loaded function against the same function from a
   shared library loaded by ``tvm_ffi.load_module``;
3. ``bench_compile``: cold compile of example_project with 2 jobs against 1, compilers
   started by a warm rerun, plugin start-up against plain pytest;
4. ``bench_memory``: JIT memory per library, RSS growth over 10,000 load/drop cycles
   and over 10,000 failing loads of each bad-input kind;
5. ``bench_debuginfo``: figure 1's load of ``-g`` objects (and of objects without
   ``-g``) with GDB JIT registration on against off;
6. ``bench_coverage``: example_project's run time with ``--orcjit-coverage`` against
   without, warm and cold;
7. ``bench_suite``: example_project's kernel tests run warm forked, in-process and
   through a shared library of the same sources; fork's overhead per test against a bare
   fork round trip, and its CPU per test with ``-n 2`` against a round trip's.

``bench_isolation`` (forking each test) and ``bench_crash_handler`` (what crash
reports cost a passing test, on against off), when present, run last and print their
own tables. ``--quick`` cuts loads, cycles and repeats for a fast look, not for figures.
The machine is shared: CPU times are the figures to trust, wall times are noisy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import bench_call
import bench_compile
import bench_coverage
import bench_debuginfo
import bench_load
import bench_memory
import bench_suite
from common import Row, print_table

FIGURES = (
    "load",
    "call",
    "compile",
    "memory",
    "debuginfo",
    "coverage",
    "suite",
    "isolation",
    "crash",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer loads, cycles and repeats")
    parser.add_argument("--only", default=",".join(FIGURES), help="comma-separated figures")
    args = parser.parse_args()
    only = set(args.only.split(","))
    quick = args.quick
    rows: list[Row] = []
    if "load" in only:
        rows += bench_load.figures(loads=100 if quick else 300, repeat=1 if quick else 3)
    if "call" in only:
        rows += bench_call.figures(calls=5000 if quick else 20000, batches=10 if quick else 30)
    if "compile" in only:
        rows += bench_compile.figures(repeat=1 if quick else 3)
    if "memory" in only:
        rows += bench_memory.figures(cycles=500 if quick else 10000)
    if "debuginfo" in only:
        rows += bench_debuginfo.figures(loads=100 if quick else 300, repeat=2 if quick else 4)
    if "coverage" in only:
        rows += bench_coverage.figures(repeat=1 if quick else 3)
    if "suite" in only:
        rows += bench_suite.figures(repeat=1 if quick else 3)
    print_table(rows)
    isolation = Path(__file__).with_name("bench_isolation.py")
    if "isolation" in only and isolation.exists():
        print()
        command = [sys.executable, str(isolation)]
        if quick:
            command += ["--tests", "100", "--repeat", "1"]
        subprocess.run(command, check=False)
    crash = Path(__file__).with_name("bench_crash_handler.py")
    if "crash" in only and crash.exists():
        print()
        command = [sys.executable, str(crash)]
        if quick:
            command += ["--loads", "100", "--tests", "100", "--repeat", "1"]
        subprocess.run(command, check=False)


if __name__ == "__main__":
    main()
