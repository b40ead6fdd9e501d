"""A kernel author's suite: example_project forked, in-process and through one shared library.

Copies example_project's kernels (kernels/*.cc, *.c: four C++ objects of
tvm-ffi exports and a C one) and the tests that use only them (test_c_abi,
test_elementwise, test_matmul, test_reduce, test_strings), runs it once forked
(not timed: it compiles, and the plugin remembers what forked tests imported),
then runs the suite warm three ways, each in its own pytest:

* ``fork``: ``--orcjit-isolation=fork`` (the default);
* ``none``: ``--orcjit-isolation=none``, each test loading its library in-process;
* ``so``: the same sources compiled with the plugin's flags and linked by
  ``clang++ -shared``, loaded once by ``tvm_ffi.load_module`` and handed to
  every test as its ``orcjit_lib`` (a conftest override; tests that need fresh
  static state fail there).

Times come from the test loop only (``pytest_runtestloop``). After its loop
each pytest times a bare ``fork`` + ``pipe`` + ``waitpid`` round trip (the
child writes one byte and ``os._exit``s). Figures, each the median over
``--repeat`` runs of each run's own ratio:

* fork's per-test overhead over none, divided by the round trip (goal <= 1.5);
* with ``-n 2`` (both cores busy): CPU per forked test (user + system of the
  pytest workers, the fork servers and their children) over CPU per in-process
  test, divided by the CPU of a round trip (goal <= 1.5).

No assertions.

    python benchmarks/bench_suite.py [--repeat 3] [--no-xdist]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import BARE_ROUND_TRIP, ROOT, Row, include_flags, print_table

EXAMPLE = ROOT / "example_project"
TESTS = (
    "test_c_abi.py",
    "test_elementwise.py",
    "test_matmul.py",
    "test_reduce.py",
    "test_strings.py",
)
FLAGS = ("-std=c++20", "-fPIC", "-O0")  # the plugin's defaults (compiler.py, settings.py)

CONFTEST = (
    """
import json, os, resource, time
import pytest

ROUND_TRIPS = 200
RESULT = {}
"""
    + BARE_ROUND_TRIP
    + """


def cpu(who):
    used = resource.getrusage(who)
    return used.ru_utime + used.ru_stime


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    start = time.perf_counter()
    cpu_start = cpu(resource.RUSAGE_SELF) + cpu(resource.RUSAGE_CHILDREN)
    try:
        return (yield)
    finally:
        RESULT["loop"] = time.perf_counter() - start
        RESULT["tests"] = len(session.items)
        RESULT["cpu_start"] = cpu_start
        trip_start = cpu(resource.RUSAGE_SELF) + cpu(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            bare_round_trip()
        RESULT["trip"] = (time.perf_counter() - start) / ROUND_TRIPS
        trip = cpu(resource.RUSAGE_SELF) + cpu(resource.RUSAGE_CHILDREN) - trip_start
        RESULT["trip_cpu"] = trip / ROUND_TRIPS


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # The fork servers are reaped at unconfigure: only now are their CPU times (and their
    # children's) in RUSAGE_CHILDREN.
    controller = getattr(config, "workerinput", None) is None and RESULT.get("tests") == 0
    if "loop" not in RESULT or controller:
        return  # an xdist controller: its workers report
    total = cpu(resource.RUSAGE_SELF) + cpu(resource.RUSAGE_CHILDREN) - RESULT.pop("cpu_start")
    RESULT["cpu"] = total - RESULT["trip_cpu"] * ROUND_TRIPS
    name = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(os.path.join(os.environ["BENCH_RESULT"], name + ".json"), "w") as f:
        json.dump(RESULT, f)


if os.environ.get("BENCH_SO"):

    @pytest.fixture(scope="session")
    def orcjit_lib():
        import tvm_ffi

        return tvm_ffi.load_module(os.environ["BENCH_SO"])
"""
)


def make_suite(root: Path) -> None:
    shutil.copytree(EXAMPLE / "kernels", root / "kernels")
    (root / "tests").mkdir()
    for name in ("conftest.py", *TESTS):
        shutil.copy(EXAMPLE / "tests" / name, root / "tests" / name)
    shutil.copy(EXAMPLE / "pyproject.toml", root / "pyproject.toml")
    (root / "conftest.py").write_text(CONFTEST)


def build_so(root: Path) -> Path:
    """The suite's kernels linked into one shared library, compiled as the plugin does."""
    cxx, cc = os.environ.get("CXX", "clang++-22"), os.environ.get("CC", "clang-22")
    objects = []
    for source in sorted((root / "kernels").iterdir()):
        if source.suffix not in (".cc", ".c"):
            continue
        target = root / "so" / (source.name + ".o")
        target.parent.mkdir(exist_ok=True)
        compiler = [cc] if source.suffix == ".c" else [cxx, *FLAGS[:1]]
        command = [*compiler, *FLAGS[1:], *include_flags(), "-c", str(source), "-o", str(target)]
        subprocess.run(command, check=True)
        objects.append(str(target))
    library = root / "so" / "kernels.so"
    subprocess.run([cxx, "-shared", *objects, "-o", str(library)], check=True)
    return library


def run(root: Path, mode: str, workers: int, so: Path) -> dict[str, float]:
    """One pytest run of the suite; the test loop's figures, summed over xdist workers."""
    results = root / f"results-{mode}-{workers}"
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir()
    env = dict(os.environ, BENCH_RESULT=str(results))
    env.pop("BENCH_SO", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"]
    if mode == "so":
        env["BENCH_SO"] = str(so)
        command.append("--orcjit-isolation=none")
    else:
        command.append(f"--orcjit-isolation={mode}")
    command += ["-n", str(workers)] if workers else ["-p", "no:xdist"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not any(results.iterdir()):
        sys.exit(f"pytest failed ({mode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    parts = [json.loads(path.read_text()) for path in results.iterdir()]
    tests = sum(part["tests"] for part in parts)
    return {
        "tests": tests,
        "loop": max(part["loop"] for part in parts),
        "cpu": sum(part["cpu"] for part in parts) / tests,
        "trip": statistics.mean(part["trip"] for part in parts),
        "trip_cpu": statistics.mean(part["trip_cpu"] for part in parts),
        "failed": float(done.returncode != 0),
    }


def figures(repeat: int = 3, xdist: bool = True) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench_suite_") as tmp:
        root = Path(tmp)
        make_suite(root)
        so = build_so(root)
        # Not timed: compiles into the cache, and leaves in pytest's cache what forked tests
        # taught the plugin (learned imports, the backtrace symbolizer), as a previous run would.
        run(root, "fork", 0, so)
        wall, cpu, runs = [], [], []
        for _ in range(repeat):
            this = {mode: run(root, mode, 0, so) for mode in ("none", "fork", "so")}
            runs.append(this)
            tests = this["fork"]["tests"]
            overhead = (this["fork"]["loop"] - this["none"]["loop"]) / tests
            wall.append(overhead / this["fork"]["trip"])
            if xdist:
                fork, none = run(root, "fork", 2, so), run(root, "none", 2, so)
                cpu.append((fork["cpu"] - none["cpu"]) / fork["trip_cpu"])
                this["fork -n 2"], this["none -n 2"] = fork, none
    last = runs[-1]
    tests = int(last["fork"]["tests"])
    rows = []
    for mode in ("fork", "none", "so"):
        loops = [this[mode]["loop"] / tests * 1e3 for this in runs]
        failed = " (some tests fail)" if last[mode]["failed"] else ""
        rows.append(Row(f"5. suite of {tests} tests, ms/test, {mode}{failed}", f"{min(loops):.2f}"))
    trip = statistics.median(this["fork"]["trip"] * 1e3 for this in runs)
    overhead = statistics.median(
        (this["fork"]["loop"] - this["none"]["loop"]) / tests * 1e3 for this in runs
    )
    rows.append(
        Row(
            "5. fork overhead over none, ms/test (ref: bare fork round trip)",
            f"{overhead:.2f}",
            f"{trip:.2f}",
            f"{statistics.median(wall):.2f}x",
            "<= 1.5x",
        )
    )
    if cpu:
        cpu_fork = statistics.median(this["fork -n 2"]["cpu"] * 1e3 for this in runs)
        cpu_none = statistics.median(this["none -n 2"]["cpu"] * 1e3 for this in runs)
        trip_cpu = statistics.median(this["fork -n 2"]["trip_cpu"] * 1e3 for this in runs)
        rows.append(
            Row(
                f"5. -n 2: CPU ms/test fork over none ({cpu_fork:.2f} - {cpu_none:.2f}) "
                "(ref: bare fork CPU)",
                f"{cpu_fork - cpu_none:.2f}",
                f"{trip_cpu:.2f}",
                f"{statistics.median(cpu):.2f}x",
                "<= 1.5x",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-xdist", action="store_true", help="skip the -n 2 CPU figure")
    args = parser.parse_args()
    print_table(figures(args.repeat, not args.no_xdist))


if __name__ == "__main__":
    main()
