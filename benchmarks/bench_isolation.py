"""What forking each test costs: --orcjit-isolation=fork against none, and a bare fork.

Generates a project of N trivial orcjit tests (each calls a C kernel through a
fresh ``orcjit_lib``), runs it with ``--orcjit-isolation=fork`` and with
``none``, and times, inside the same pytest process and after its tests, a
bare ``fork`` + ``pipe`` + ``waitpid`` round trip (the child writes one byte
and ``os._exit``s). Prints the per-test overhead of isolation and its ratio to
that round trip (goal: <= 1.25). No assertions.

    python benchmarks/bench_isolation.py [--tests 300] [--repeat 3]

Times come from the test loop only (``pytest_runtestloop``), not from pytest's
start-up or the compile; the best of ``--repeat`` runs of each mode is used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

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
import pytest

@pytest.mark.parametrize("n", range({tests}))
def test_add_one(orcjit_lib, n):
    assert orcjit_lib.add_one(n) == n + 1
"""

CONFTEST = """
import json, os, time
import pytest

ROUND_TRIPS = 300


def bare_round_trip():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"x")
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    os.waitpid(pid, 0)
    os.close(r)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        loop = time.perf_counter() - start
        trips = []
        for _ in range(ROUND_TRIPS):
            t = time.perf_counter()
            bare_round_trip()
            trips.append(time.perf_counter() - t)
        trips.sort()
        result = {
            "loop": loop,
            "tests": len(session.items),
            "trip_mean": sum(trips) / len(trips),
            "trip_median": trips[len(trips) // 2],
        }
        with open(os.environ["BENCH_RESULT"], "w") as f:
            json.dump(result, f)
"""


def make_project(root: Path, tests: int) -> None:
    (root / "kernels").mkdir()
    (root / "kernels" / "add_one.c").write_text(KERNEL)
    (root / "test_bench.py").write_text(TESTS.format(tests=tests))
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
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_isolation_") as tmp:
        root = Path(tmp)
        make_project(root, args.tests)
        run(root, "none")  # warm the compile cache; not timed
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.repeat):
            for isolation in ("none", "fork"):
                data = run(root, isolation)
                if isolation not in best or data["loop"] < best[isolation]["loop"]:
                    best[isolation] = data
    none, fork = best["none"], best["fork"]
    tests = fork["tests"]
    per_test_none = none["loop"] / tests * 1e3
    per_test_fork = fork["loop"] / tests * 1e3
    overhead = per_test_fork - per_test_none
    trip = fork["trip_mean"] * 1e3
    print(f"{int(tests)} tests, best of {args.repeat} runs per mode (ms)")
    print(f"{'':32}{'per test':>10}{'loop':>10}")
    print(f"{'--orcjit-isolation=none':32}{per_test_none:10.3f}{none['loop'] * 1e3:10.1f}")
    print(f"{'--orcjit-isolation=fork':32}{per_test_fork:10.3f}{fork['loop'] * 1e3:10.1f}")
    print(f"{'isolation overhead':32}{overhead:10.3f}")
    print(f"{'bare fork+pipe+waitpid (mean)':32}{trip:10.3f}")
    print(f"{'bare fork+pipe+waitpid (median)':32}{fork['trip_median'] * 1e3:10.3f}")
    print(f"{'overhead / bare round trip':32}{overhead / trip:10.2f}   (goal <= 1.25)")


if __name__ == "__main__":
    main()
