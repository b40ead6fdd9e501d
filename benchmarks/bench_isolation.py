"""What forking each test costs: --orcjit-isolation=fork against none, and a bare fork.

Generates a project of N trivial orcjit tests (each calls a C kernel through a
fresh ``orcjit_lib``), runs it with ``--orcjit-isolation=fork`` and with
``none``, and times, inside the same pytest process and after its tests, a
bare ``fork`` + ``pipe`` + ``waitpid`` round trip (the child writes one byte
and ``os._exit``s). Prints the per-test overhead of isolation and its ratio to
that round trip (goal: <= 1.25), and the minor page faults per test of the
pytest process and of the forked children (children of the plugin's fork
server, counted once the server is reaped), which is where the time goes: after
a fork every page either process writes is copied (or at least faulted) once.
No assertions.

    python benchmarks/bench_isolation.py [--tests 300] [--repeat 3] [--busy-ms 0]

With ``--busy-ms N`` each test spins N ms first: tests that take time leave the
other core idle for the fork server (and its warming) to work in.

Times come from the test loop only (``pytest_runtestloop``), not from pytest's
start-up or the compile. Each repeat runs ``none`` then ``fork``; the table
shows the best run of each mode, and the ratio is the median over repeats of
each repeat's own ratio (its fork run against its none run, over the round trip
timed in its fork run), which a repeat slowed down by the machine does not skew.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from common import BARE_ROUND_TRIP

KERNEL = r"""
#include <tvm/ffi/c_api.h>

int __tvm_ffi_add_one(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = args[0].v_int64 + 1;
  return 0;
}
"""

TESTS = """
import time
import pytest

@pytest.mark.parametrize("n", range({tests}))
def test_add_one(orcjit_lib, n):
    end = time.perf_counter() + {busy}  # --busy-ms: a test that does some work
    while time.perf_counter() < end:
        pass
    assert orcjit_lib.add_one(n) == n + 1
"""

CONFTEST = (
    """
import json, os, resource, time
import pytest

ROUND_TRIPS = 300
"""
    + BARE_ROUND_TRIP
    + """


def usage(who):  # minor page faults, and CPU seconds (user + system), of who so far
    used = resource.getrusage(who)
    return used.ru_minflt, used.ru_utime + used.ru_stime


RESULT = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    start = time.perf_counter()
    self_start, children_start = usage(resource.RUSAGE_SELF), usage(resource.RUSAGE_CHILDREN)
    try:
        return (yield)
    finally:
        loop = time.perf_counter() - start
        self_end = usage(resource.RUSAGE_SELF)
        trips = []
        trip_start = usage(resource.RUSAGE_CHILDREN)
        for _ in range(ROUND_TRIPS):
            t = time.perf_counter()
            bare_round_trip()
            trips.append(time.perf_counter() - t)
        trip_self_end, trip_end = usage(resource.RUSAGE_SELF), usage(resource.RUSAGE_CHILDREN)
        trip_children = (trip_end[0] - trip_start[0], trip_end[1] - trip_start[1])
        trips.sort()
        tests = len(session.items)
        RESULT.update(
            loop=loop,
            tests=tests,
            parent_faults=(self_end[0] - self_start[0]) / tests,
            parent_cpu=(self_end[1] - self_start[1]) / tests,
            trip_mean=sum(trips) / len(trips),
            trip_median=trips[len(trips) // 2],
            trip_child_faults=trip_children[0] / ROUND_TRIPS,
            trip_cpu=(trip_self_end[1] - self_end[1] + trip_children[1]) / ROUND_TRIPS,
            children_start=children_start,
            trip_children=trip_children,
        )


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # Forked tests are children of the fork server, which the plugin reaps at unconfigure:
    # only now are their page faults and CPU time (and the server's) in RUSAGE_CHILDREN.
    end, start = usage(resource.RUSAGE_CHILDREN), RESULT.pop("children_start")
    trip_faults, trip_cpu = RESULT.pop("trip_children")
    tests = RESULT["tests"]
    RESULT["child_faults"] = (end[0] - start[0] - trip_faults) / tests
    RESULT["cpu"] = RESULT.pop("parent_cpu") + (end[1] - start[1] - trip_cpu) / tests
    with open(os.environ["BENCH_RESULT"], "w") as f:
        json.dump(RESULT, f)
"""
)


def make_project(root: Path, tests: int, busy_ms: float = 0.0) -> None:
    (root / "kernels").mkdir()
    (root / "kernels" / "add_one.c").write_text(KERNEL)
    (root / "test_bench.py").write_text(TESTS.format(tests=tests, busy=busy_ms / 1e3))
    (root / "conftest.py").write_text(CONFTEST)
    (root / "pytest.ini").write_text(
        textwrap.dedent(
            """\
            [pytest]
            orcjit_sources = kernels/*.c
            """
        )
    )


def run(root: Path, isolation: str) -> dict[str, float]:
    result = root / f"result-{isolation}.json"
    env = dict(os.environ, BENCH_RESULT=str(result))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"]
    command += ["-p", "no:xdist", f"--orcjit-isolation={isolation}"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"pytest failed ({isolation}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    data: dict[str, float] = json.loads(result.read_text())
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=300)
    parser.add_argument("--busy-ms", type=float, default=0.0, help="work in each test (spin)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_isolation_") as tmp:
        root = Path(tmp)
        make_project(root, args.tests, args.busy_ms)
        run(root, "none")  # warm the compile cache; not timed
        best: dict[str, dict[str, float]] = {}
        ratios = []
        for _ in range(args.repeat):
            this: dict[str, dict[str, float]] = {}
            for isolation in ("none", "fork"):
                data = this[isolation] = run(root, isolation)
                if isolation not in best or data["loop"] < best[isolation]["loop"]:
                    best[isolation] = data
            run_overhead = (this["fork"]["loop"] - this["none"]["loop"]) / this["fork"]["tests"]
            ratios.append(run_overhead / this["fork"]["trip_mean"])
    fork = best["fork"]
    tests = fork["tests"]
    per_test = {mode: best[mode]["loop"] / tests * 1e3 for mode in best}
    overhead = per_test["fork"] - per_test["none"]
    trip = fork["trip_mean"] * 1e3
    kind = f"orcjit tests spinning {args.busy_ms:g} ms" if args.busy_ms else "trivial orcjit tests"
    print(f"{int(tests)} {kind}, best of {args.repeat} runs per mode")
    row = "{:34}{:>10}{:>10}{:>12}{:>14}{:>14}"
    print(row.format("", "ms/test", "loop ms", "CPU ms/test", "faults/test", "child faults"))
    for mode in ("none", "fork"):
        data = best[mode]
        print(
            row.format(
                f"--orcjit-isolation={mode}",
                f"{per_test[mode]:.3f}",
                f"{data['loop'] * 1e3:.1f}",
                f"{data['cpu'] * 1e3:.2f}",
                f"{data['parent_faults']:.0f}",
                f"{data['child_faults']:.0f}",
            )
        )
    print(row.format("isolation overhead", f"{overhead:.3f}", "", "", "", ""))
    child_faults = f"{fork['trip_child_faults']:.0f}"
    trip_cpu = f"{fork['trip_cpu'] * 1e3:.2f}"
    print(row.format("bare fork+pipe+waitpid, mean", f"{trip:.3f}", "", trip_cpu, "", child_faults))
    median = f"{fork['trip_median'] * 1e3:.3f}"
    print(row.format("bare fork+pipe+waitpid, median", median, "", "", "", ""))
    each = " ".join(f"{r:.2f}" for r in sorted(ratios))
    print(f"overhead / bare round trip: {overhead / trip:.2f} for the best runs")
    print(f"overhead / bare round trip, median of {len(ratios)} runs: ", end="")
    print(f"{statistics.median(ratios):.2f} (goal <= 1.25; each: {each})")
    print("CPU: user + system time per test (per round trip) of the pytest process, the fork")
    print("server and its children, on all cores; faults: minor page faults (copy-on-write after")
    print("fork) of the pytest process per test, and of its forked children per test (per round")
    print("trip for the bare fork)")


if __name__ == "__main__":
    main()
