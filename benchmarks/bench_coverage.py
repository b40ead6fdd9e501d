"""Figure 5: what kernel coverage costs: example_project's run time with --orcjit-coverage.

Works on a copy of ``example_project`` in a temporary directory. Every run is a
separate ``pytest`` process (``-p no:randomly -p no:xdist``, without the CUDA
tests, each test forked: the default isolation), timed from process start to
exit:

* warm run: the compile cache already holds the objects of the mode (one
  untimed run first); median of ``--repeat`` runs with ``--orcjit-coverage``
  (which includes merging the counters and printing the table) against
  without, alternating;
* cold run: the same with an empty cache (``--cache-clear``), so that the
  coverage-instrumented compiles and the runtime's relink are included.

    python benchmarks/bench_coverage.py [--repeat 3]

Wall-clock times on a shared machine: noisy. No assertions.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Row, median, print_table, ratio

BASE = ["-q", "-p", "no:randomly", "-p", "no:xdist", "--ignore=tests/test_cuda.py"]
COMPILERS = ["--orcjit-cxx=clang++-22", "--orcjit-cc=clang-22"]


def run(project: Path, args: list[str]) -> float:
    """Seconds of one pytest run in ``project``; exits if the run fails."""
    command = [sys.executable, "-m", "pytest", *BASE, *COMPILERS, *args]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"pytest {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return seconds


def figures(repeat: int = 3) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench_coverage_") as name:
        project = Path(name) / "project"
        shutil.copytree(ROOT / "example_project", project)
        modes = {"plain": [], "coverage": ["--orcjit-coverage"]}
        cold: dict[str, list[float]] = {mode: [] for mode in modes}
        warm: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(repeat):
            for mode, args in modes.items():
                cold[mode].append(run(project, ["--cache-clear", *args]))
        for args in modes.values():
            run(project, args)  # the mode's objects in the cache
        for _ in range(repeat):
            for mode, args in modes.items():
                warm[mode].append(run(project, args))
    rows = []
    for label, times in (("warm run", warm), ("cold run", cold)):
        ours, reference = median(times["coverage"]), median(times["plain"])
        rows.append(
            Row(
                f"example_project {label}, --orcjit-coverage vs without",
                f"{ours:.2f} s",
                f"{reference:.2f} s",
                ratio(ours, reference),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    print_table(figures(parser.parse_args().repeat))


if __name__ == "__main__":
    if shutil.which("clang++-22") is None or shutil.which("llvm-profdata-22") is None:
        sys.exit("bench_coverage needs clang++-22 and llvm-profdata-22")
    main()
