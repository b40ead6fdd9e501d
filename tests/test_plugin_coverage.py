"""Kernel coverage (--orcjit-coverage): the lines a run executed, however its tests ran.

A kernel with two branches, one of which the tests take, must report exactly the
other branch's lines as missed: in-process, forked, and under pytest-xdist. A
crashing test loses its own counters only, and the report says so; the lcov
file agrees with the terminal table; a threshold fails the run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from plugin_helpers import REAL_CXX, Project, core_available, make_project

from pytest_orcjit.coverage import MSG_BAD_REPORT, MSG_LOST, MSG_TITLE
from pytest_orcjit.coverage_report import parse_lcov
from pytest_orcjit.coverage_runtime import ARCHIVE, MSG_NO_RUNTIME, MSG_NOT_CLANG

pytestmark = [
    pytest.mark.skipif(not core_available(), reason="native core not built"),
    pytest.mark.skipif(
        not REAL_CXX.startswith("clang") or not shutil.which("llvm-profdata-22"),
        reason="kernel coverage needs clang++-22 and llvm-profdata-22",
    ),
]

# Lines 5-7 (the branch's body and its closing brace) run only for x <= 0, which no test
# below asks for.
KERNEL = """\
#include <tvm/ffi/function.h>

int64_t pick(int64_t x) {
  if (x <= 0) {
    int64_t y = -x;
    return y + 1;
  }
  return x * 2;
}
TVM_FFI_DLL_EXPORT_TYPED_FUNC(pick, pick);
"""

CRASH = """\
#include <tvm/ffi/function.h>
#include <cstdlib>

void crash() { std::abort(); }
TVM_FFI_DLL_EXPORT_TYPED_FUNC(crash, crash);
"""

TESTS = """\
def test_positive(orcjit_lib):
    assert orcjit_lib.pick(3) == 6

def test_positive_again(orcjit_lib):
    assert orcjit_lib.pick(5) == 10
"""

ROW = r"kernels/pick.cc\s+(\d+)\s+(\d+)\s+(\d+)%(?:\s+(.*))?"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(pytester, monkeypatch)
    project.ini("orcjit_sources = kernels/pick.cc", isolation=None)
    project.write("kernels/pick.cc", KERNEL)
    project.write("test_pick.py", TESTS)
    return project


def row_of(result: pytest.RunResult) -> tuple[int, int, int, str]:
    """(statements, missed, percent, missing) of pick.cc in the terminal table."""
    for line in result.outlines:
        found = re.fullmatch(ROW, line.strip())
        if found:
            stmts, miss, cover, missing = found.groups()
            return int(stmts), int(miss), int(cover), (missing or "").strip()
    raise AssertionError("no row for kernels/pick.cc in:\n" + result.stdout.str())


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((), id="fork"),
        pytest.param(("--orcjit-isolation=none",), id="in-process"),
        pytest.param(("-n", "2"), id="xdist-fork"),
        pytest.param(("-n", "2", "--orcjit-isolation=none"), id="xdist-in-process"),
    ],
)
def test_the_untaken_branch_is_reported_missed(project: Project, args: tuple[str, ...]) -> None:
    result = project.pytester.runpytest_subprocess("--orcjit-coverage", *args)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"*{MSG_TITLE}*"])
    stmts, missed, _, missing = row_of(result)
    assert missing == "5-7"  # exactly the lines of the branch no test took
    assert missed == 3
    assert stmts > missed


def test_each_library_of_a_test_writes_its_own_counters(project: Project) -> None:
    project.write(
        "test_pick.py",
        "def test_both_branches(orcjit_session, orcjit_objects):\n"
        "    for x in (3, -3):  # one library per branch, closed before the next\n"
        "        lib = orcjit_session.create_library()\n"
        "        for obj in orcjit_objects:\n"
        "            lib.add(obj)\n"
        "        lib.pick(x)\n"
        "        lib.close()\n",
    )
    result = project.pytester.runpytest_subprocess("--orcjit-coverage")
    result.assert_outcomes(passed=1)
    _, missed, cover, missing = row_of(result)
    assert (missed, cover, missing) == (0, 100, "")


def test_lcov_report_has_the_terminal_tables_counts(project: Project) -> None:
    result = project.pytester.runpytest_subprocess(
        "--orcjit-coverage-report=lcov:out/kernels.lcov", "--orcjit-coverage-report=json:out/c.json"
    )
    result.assert_outcomes(passed=2)
    stmts, missed, _, _ = row_of(result)
    text = (project.path / "out" / "kernels.lcov").read_text()
    files = parse_lcov(text)
    assert list(files) == [str((project.path / "kernels" / "pick.cc").resolve())]
    (coverage,) = files.values()
    assert (coverage.statements, len(coverage.missed)) == (stmts, missed)
    assert f"LF:{stmts}" in text and f"LH:{stmts - missed}" in text
    if shutil.which("lcov"):  # lcov's own parser agrees
        summary = subprocess.run(
            ["lcov", "--summary", str(project.path / "out" / "kernels.lcov")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert f"({stmts - missed} of {stmts} lines)" in summary.stdout + summary.stderr
    # Per-test contexts: both tests ran line 8, neither ran line 5.
    exported = json.loads((project.path / "out" / "c.json").read_text())
    (lines,) = exported["orcjit"]["contexts"].values()
    assert sorted(lines["8"]) == [
        "test_pick.py::test_positive",
        "test_pick.py::test_positive_again",
    ]
    assert "5" not in lines


def test_a_crashing_test_loses_only_its_own_counters(project: Project) -> None:
    project.write("kernels/crash.cc", CRASH)
    project.write(
        "test_crash.py",
        "import pytest\n\n"
        "@pytest.mark.orcjit(sources=['kernels/crash.cc', 'kernels/pick.cc'])\n"
        "def test_crash(orcjit_lib):\n"
        "    orcjit_lib.pick(-1)\n"  # runs lines 5-7, but the counters die with the child
        "    orcjit_lib.crash()\n",
    )
    result = project.pytester.runpytest_subprocess("--orcjit-coverage")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([MSG_LOST.format(count=1, tests="test_crash.py::test_crash")])
    _, _, _, missing = row_of(result)
    assert missing == "5-7"


def test_fail_under_fails_the_run_with_a_message(project: Project) -> None:
    result = project.pytester.runpytest_subprocess(
        "--orcjit-coverage", "--orcjit-coverage-fail-under=99"
    )
    result.assert_outcomes(passed=2)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*FAIL Required kernel line coverage of 99% not reached*"])
    passing = project.pytester.runpytest_subprocess("--orcjit-coverage-fail-under=10")
    assert passing.ret == 0


def test_a_bad_report_kind_is_a_usage_error(project: Project) -> None:
    result = project.pytester.runpytest_subprocess("--orcjit-coverage-report=xml:out.xml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    message = MSG_BAD_REPORT.format(value="xml:out.xml", origin="--orcjit-coverage-report")
    result.stderr.fnmatch_lines([f"*{message}*"])


@pytest.mark.skipif(not shutil.which("g++"), reason="needs g++")
def test_gcc_is_refused_naming_the_family(project: Project) -> None:
    gxx = project.wrapper("gxx", "g++")
    result = project.pytester.runpytest_subprocess("--orcjit-coverage", f"--orcjit-cxx={gxx}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    message = MSG_NOT_CLANG.format(kind="C++", command=str(gxx), family="gcc")
    result.stderr.fnmatch_lines([f"*{message}*"])


def _has_profile_runtime(cxx: str) -> bool:
    printed = subprocess.run(
        [cxx, "-print-file-name=libclang_rt.profile-x86_64.a"], capture_output=True, text=True
    ).stdout.strip()
    return Path(printed).is_absolute()


@pytest.mark.skipif(
    not shutil.which("clang++-19") or _has_profile_runtime("clang++-19"),
    reason="needs a clang++-19 without its profile runtime",
)
def test_a_clang_without_profile_runtime_is_refused_naming_the_package(project: Project) -> None:
    result = project.pytester.runpytest_subprocess(
        "--orcjit-coverage", "--orcjit-cxx=clang++-19", "--orcjit-cc=clang-19"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    message = MSG_NO_RUNTIME.format(command=shutil.which("clang++-19"), archive=ARCHIVE, major="19")
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_coverage_objects_are_cached_apart(project: Project) -> None:
    plain = project.pytester.runpytest_subprocess()
    plain.assert_outcomes(passed=2)
    project.reset_log()
    covered = project.pytester.runpytest_subprocess("--orcjit-coverage")
    covered.assert_outcomes(passed=2)
    assert project.rel("kernels/pick.cc") in project.compiles()  # not the plain object
    project.reset_log()
    again = project.pytester.runpytest_subprocess()
    again.assert_outcomes(passed=2)
    assert project.compiles() == []  # the plain object is still cached
    assert MSG_TITLE not in again.stdout.str()
