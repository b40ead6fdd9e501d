"""Figure 3: compiling the example project cold: 2 jobs against 1, PCH, warm rerun, start-up.

Works on a copy of ``example_project`` in a temporary directory, whose compilers
are wrappers around clang++-22 and clang-22 that log every invocation with its
start and end time (``--orcjit-cxx``/``--orcjit-cc``), and with a small timing
plugin (``-p orcjit_bench_timing``) that records when collection starts and
when the first test starts. Every run is a separate ``pytest`` process with
``--orcjit-isolation=none -p no:randomly -p no:xdist``, without the CUDA
tests (``tests/test_cuda.py``: nvcc is not a C++ compiler these figures are about).

* cold compile: the span from the first compiler start to the last compiler end
  of the compile step of a run with an empty compile cache (``--cache-clear``):
  the compiles started before the first test, that is every source of
  ``orcjit_sources`` and of the markers (``orcjit_compile`` calls inside tests
  compile later, one at a time, whatever ``--orcjit-jobs`` says); with
  ``--orcjit-jobs`` 1 and 2, alternating, median of ``--repeat`` runs each
  (goal: 2 jobs <= 0.55x);
* precompiled header: the same span with 2 jobs and the PCH of the tvm-ffi
  headers (``--orcjit-pch=auto``, the default; its own compile included)
  against ``--orcjit-pch=off``, median of ``--repeat`` runs each (goal: <= 0.6x);
* warm rerun: compiler processes started by a second run (goal: none);
* start-up: median over ``--repeat`` warm runs of the time from the start of
  collection to the start of the first test, and from the start of the process
  to the first test, with the plugin against plain pytest (``-p no:orcjit``,
  whose tests then error at setup: only the time to the first test counts).

    python benchmarks/bench_compile.py [--repeat 3]

Wall-clock times: on a busy machine parallel compiles lose most. No assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Row, median, print_table

WRAPPER = """#!/bin/sh
start=$(date +%s.%N)
{compiler} "$@"
status=$?
echo "$start $(date +%s.%N) $*" >> {log}
exit $status
"""

TIMING_PLUGIN = """
import json, os, time
import pytest

marks = {}

@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    marks.setdefault("collection", time.time())

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logstart(nodeid, location):
    if "first_test" not in marks:
        marks["first_test"] = time.time()
        with open(os.environ["BENCH_TIMING"], "w") as f:
            json.dump(marks, f)
"""


def make_project(tmp: Path) -> tuple[Path, Path, list[str]]:
    """The copied project, the compiler log, and the options that select the wrappers."""
    project = tmp / "project"
    shutil.copytree(ROOT / "example_project", project)
    log = tmp / "compiler.log"
    wrappers = []
    for name, compiler in (("cxx", "clang++-22"), ("cc", "clang-22")):
        path = tmp / f"counting-{compiler}"
        path.write_text(WRAPPER.format(compiler=shutil.which(compiler), log=log))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        wrappers.append(f"--orcjit-{name}={path}")
    (tmp / "orcjit_bench_timing.py").write_text(TIMING_PLUGIN)
    return project, log, wrappers


def run_pytest(project: Path, tmp: Path, args: list[str]) -> dict[str, float]:
    """One pytest run; returns its timing marks and when the process was started."""
    timing = tmp / "timing.json"
    timing.unlink(missing_ok=True)
    path = os.pathsep.join(filter(None, [str(tmp), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, BENCH_TIMING=str(timing), PYTHONPATH=path)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "orcjit_bench_timing"]
    command += ["-p", "no:randomly", "-p", "no:xdist", "--ignore=tests/test_cuda.py", *args]
    started = time.time()
    subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    marks: dict[str, float] = json.loads(timing.read_text())
    marks["process"] = started
    return marks


def compiler_runs(log: Path) -> list[tuple[float, float, str]]:
    if not log.exists():
        return []
    runs = []
    for line in log.read_text().splitlines():
        start, end, command = line.split(" ", 2)
        runs.append((float(start), float(end), command))
    return runs


def compile_span(log: Path, marks: dict[str, float]) -> tuple[float, int]:
    """The compile step's span, first compiler start to last end, and its number of compiles.

    The compile step is what starts before the first test (``orcjit_compile``
    calls inside tests compile one source each, later); a PCH's compile counts,
    the compiler's identity probes (``--version``, ``-###``, at configure
    time, before collection) do not.
    """
    runs = [
        run
        for run in compiler_runs(log)
        if not {"--version", "-###"} & set(run[2].split()) and run[0] < marks["first_test"]
    ]
    compiles = sum(" -c " in f" {run[2]} " for run in runs)
    return max(r[1] for r in runs) - min(r[0] for r in runs), compiles


def figures(repeat: int = 3) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench_compile_") as name:
        tmp = Path(name)
        project, log, wrappers = make_project(tmp)
        base = [*wrappers, "--orcjit-isolation=none"]
        spans: dict[int, list[float]] = {1: [], 2: []}
        pch_spans: dict[str, list[float]] = {"auto": [], "off": []}
        compiles = 0
        for _ in range(repeat):
            for pch in ("auto", "off"):
                log.unlink(missing_ok=True)
                args = [*base, "--cache-clear", "--orcjit-jobs=2", f"--orcjit-pch={pch}"]
                pch_spans[pch].append(compile_span(log, run_pytest(project, tmp, args))[0])
            # Last, so that the warm rerun below finds what a run with the defaults compiled.
            for jobs in (1, 2):
                log.unlink(missing_ok=True)
                marks = run_pytest(project, tmp, [*base, "--cache-clear", f"--orcjit-jobs={jobs}"])
                span, compiles = compile_span(log, marks)
                spans[jobs].append(span)
        log.unlink(missing_ok=True)
        run_pytest(project, tmp, base)
        warm_runs = len(compiler_runs(log))
        startup: dict[str, dict[str, list[float]]] = {}
        for _ in range(repeat):
            for kind, args in (("plugin", base), ("plain", ["-p", "no:orcjit"])):
                marks = run_pytest(project, tmp, args)
                by = startup.setdefault(kind, {"collection": [], "process": []})
                by["collection"].append(marks["first_test"] - marks["collection"])
                by["process"].append(marks["first_test"] - marks["process"])
    one, two = median(spans[1]), median(spans[2])
    rows = [
        Row(
            f"3. cold compile of example_project ({compiles} sources), s: 2 jobs vs 1",
            f"{two:.2f}",
            f"{one:.2f}",
            f"{two / one:.2f}x",
            "<= 0.55x",
        ),
        Row(
            "3. cold compile, 2 jobs, s: PCH of the tvm-ffi headers vs --orcjit-pch=off",
            f"{median(pch_spans['auto']):.2f}",
            f"{median(pch_spans['off']):.2f}",
            f"{median(pch_spans['auto']) / median(pch_spans['off']):.2f}x",
            "<= 0.6x",
        ),
        Row("3. compilers started by the warm rerun", str(warm_runs), "", "", "0"),
    ]
    for window in ("collection", "process"):
        ours = median(startup["plugin"][window]) * 1e3
        plain = median(startup["plain"][window]) * 1e3
        what = "collection start" if window == "collection" else "process start"
        rows.append(
            Row(
                f"3. {what} to first test, warm, ms (ref: plain pytest)",
                f"{ours:.0f}",
                f"{plain:.0f}",
                f"{ours - plain:+.0f} ms",
                "< +150 ms" if window == "collection" else "",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_table(figures(args.repeat))


if __name__ == "__main__":
    main()
