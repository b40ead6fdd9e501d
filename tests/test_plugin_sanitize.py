"""Sanitizers through the plugin: --orcjit-sanitize, ini orcjit_sanitize and the marker's sanitize=.

Each run is a pytest subprocess: for AddressSanitizer the plugin restarts it
with the runtime preloaded, which an in-process run could not do.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from plugin_helpers import Project, core_available, make_project

from pytest_orcjit import api, sanitize, sanitizer_reports, shared_libraries

pytestmark = pytest.mark.skipif(not core_available(), reason="the native core is not built")

PRELOADED = "this process has a sanitizer runtime preloaded (.ci/sanitize), whose options differ"
"""Why the runs that start from a plain process skip themselves under .ci/sanitize."""

KERNEL = (Path(__file__).parent / "kernels" / "sanitize_overflow.cc").read_text()
WRITE_LINE = next(n for n, line in enumerate(KERNEL.splitlines(), 1) if "z[i] =" in line)
ADD_LINE = next(n for n, line in enumerate(KERNEL.splitlines(), 1) if "return x + 1" in line)

TESTS = """
import numpy as np

def test_vadd_past_the_end(orcjit_lib):
    a, b, out = np.ones(8, np.float32), np.ones(8, np.float32), np.zeros(8, np.float32)
    orcjit_lib.vadd(a, b, out)

def test_signed_overflow(orcjit_lib):
    orcjit_lib.add_one(2**31 - 1)

def test_clean(orcjit_lib):
    assert orcjit_lib.add_one(41) == 42
"""

COMPILERS = [
    pytest.param(
        "clang++-22",
        marks=pytest.mark.skipif(not shutil.which("clang++-22"), reason="no clang++-22"),
    ),
    "g++",
]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    if sanitize.address_loaded():
        pytest.skip(PRELOADED)
    monkeypatch.delenv(sanitize.RESTARTED, raising=False)
    project = make_project(pytester, monkeypatch)
    project.write("kernels/overflow.cc", KERNEL)
    project.write("test_kernels.py", TESTS)
    return project


def kernel_ini(project: Project, cxx: str, *lines: str, isolation: str | None = None) -> None:
    """pytest.ini compiling kernels/overflow.cc with a logging wrapper of ``cxx``."""
    wrapper = project.wrapper("kernel-cxx", cxx)
    project.ini(
        f"orcjit_cxx = {wrapper}",
        "orcjit_sources = kernels/overflow.cc",
        *lines,
        compilers=False,
        isolation=isolation,
    )


@pytest.mark.parametrize("cxx", COMPILERS)
@pytest.mark.parametrize("xdist", [False, True], ids=["forked", "xdist"])
def test_address_reports_the_overflow_naming_the_kernel(
    project: Project, cxx: str, xdist: bool
) -> None:
    kernel_ini(project, cxx)
    args = ["--orcjit-sanitize=address", "-k", "past_the_end or clean"]
    result = project.pytester.runpytest_subprocess(*args, *(["-n", "2"] if xdist else []))
    # Typed as is: pytest restarted itself with the runtime preloaded, the overflow fails only
    # its own test, and the report names the kernel's function, file and line.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"AddressSanitizer: heap-buffer-overflow kernels/overflow.cc:{WRITE_LINE} in Vadd",
            "*ERROR: AddressSanitizer: heap-buffer-overflow*",
            f"    #0 0x* in Vadd kernels/overflow.cc:{WRITE_LINE}",
            "    ... * more frames (the Python interpreter's)",
            "(shadow bytes left out)",
            "*==ABORTING",
            "FAILED test_kernels.py::test_vadd_past_the_end*",
        ]
    )
    result.stdout.no_fnmatch_line("*<unknown module>*")
    result.stdout.no_fnmatch_line("*Shadow byte legend*")


@pytest.mark.parametrize("cxx", COMPILERS)
@pytest.mark.parametrize("isolation", ["fork", "none"])
def test_undefined_reports_a_signed_overflow_with_file_and_line(
    project: Project, cxx: str, isolation: str
) -> None:
    kernel_ini(project, cxx, isolation=isolation)
    args = ["--orcjit-sanitize=undefined", "-k", "overflow or clean"]
    result = project.pytester.runpytest_subprocess(*args)
    # No restart is needed: the runtime is loaded like any shared library, and the test that
    # overflowed fails with the report although the kernel returned.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"kernels/overflow.cc:{ADD_LINE}:*: runtime error: signed integer overflow*",
            "FAILED test_kernels.py::test_signed_overflow*",
        ]
    )
    assert sanitize.RESTARTED not in result.stdout.str()


def run_marked(project: Project, marker: str, test: str, *args: str) -> pytest.RunResult:
    """Run ``args`` where test_marked.py holds ``test`` (source) under ``orcjit(marker)``."""
    project.write("test_marked.py", f"import pytest\n\n@pytest.mark.orcjit({marker})\n{test}")
    return project.pytester.runpytest_subprocess(*args)


def test_both_from_the_ini_and_the_marker_turns_them_off(project: Project) -> None:
    kernel_ini(project, "g++", "orcjit_sanitize = address,undefined")
    plain = "def test_plain_overflow(orcjit_lib):\n    assert orcjit_lib.add_one(2**31 - 1) < 0\n"
    result = run_marked(project, "sanitize=[]", plain, "-k", "overflow")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_kernels.py::test_signed_overflow*"])


def test_the_marker_turns_undefined_on(project: Project) -> None:
    kernel_ini(project, "g++")
    test = "def test_overflow(orcjit_lib):\n    orcjit_lib.add_one(2**31 - 1)\n"
    result = run_marked(project, "sanitize='undefined'", test, "test_marked.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*runtime error: signed integer overflow*"])


def test_undefined_in_orcjit_compile_flags_loads_and_reports(project: Project) -> None:
    project.write(
        "test_compiled.py",
        "def test_overflow(orcjit_session, orcjit_compile):\n"
        "    obj = orcjit_compile('kernels/overflow.cc', cflags=['-fsanitize=undefined'])\n"
        "    with orcjit_session.create_library('by_hand') as lib:\n"
        "        lib.add(obj)\n"
        "        lib.add_one(2**31 - 1)\n",
    )
    kernel_ini(project, "g++")
    result = project.pytester.runpytest_subprocess("test_compiled.py")
    # No option: the flag alone loads the runtime and sends its report to the test.
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"kernels/overflow.cc:{ADD_LINE}:*: runtime error: signed*"])


def test_address_in_a_marker_alone_says_how_to_run(project: Project) -> None:
    kernel_ini(project, "g++")
    test = "def test_needs_asan(orcjit_lib):\n    pass\n"
    result = run_marked(project, "sanitize='address'", test, "test_marked.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*" + sanitize.MSG_NOT_PRELOADED.split("{")[0] + "*"])


@pytest.mark.parametrize("where", ["cli", "ini"])
def test_a_misspelt_sanitizer_is_a_usage_error(project: Project, where: str) -> None:
    kernel_ini(project, "g++", *(["orcjit_sanitize = adress"] if where == "ini" else []))
    args = ["--orcjit-sanitize=adress"] if where == "cli" else []
    result = project.pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    origin = "--orcjit-sanitize" if where == "cli" else "ini orcjit_sanitize"
    result.stderr.fnmatch_lines(
        [f"*invalid sanitizer 'adress' from {origin}: one of address, undefined*"]
    )


def test_a_misspelt_marker_sanitizer_fails_its_test(project: Project) -> None:
    kernel_ini(project, "g++")
    test = "def test_bad(orcjit_lib):\n    pass\n"
    result = run_marked(project, "sanitize='adress'", test, "test_marked.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*invalid sanitizer 'adress' from marker on*one of address*"])


def test_sanitized_and_plain_objects_are_cached_apart(project: Project) -> None:
    kernel_ini(project, "g++")
    for args in ([], ["--orcjit-sanitize=undefined"], [], ["--orcjit-sanitize=undefined"]):
        project.pytester.runpytest_subprocess("-k", "clean", *args).assert_outcomes(passed=1)
    runs = project.compile_runs()
    # One compile each, the sanitized one with the flags; the later runs reuse both.
    assert len(runs) == 2
    assert "-fsanitize=undefined" not in runs[0]
    assert "-fsanitize=undefined" in runs[1]


def test_parse_names_the_valid_values() -> None:
    picked = sanitize.Picked("address, undefined", "--orcjit-sanitize")
    assert sanitize.parse(picked) == ("address", "undefined")
    assert sanitize.parse(sanitize.Picked(["undefined"], "marker")) == ("undefined",)
    assert sanitize.parse(sanitize.Picked("", "marker")) == ()
    with pytest.raises(ValueError, match="invalid sanitizer 'thread' from marker: one of"):
        sanitize.parse(sanitize.Picked("thread", "marker"))


def test_symbolize_rewrites_jit_frames() -> None:
    text = (
        "WRITE of size 4 at 0x1 thread T0\n"
        "    #0 0x7f00000010  (<unknown module>)\n"
        "    #1 0x7f00000020  (<unknown module>)\n"
        "SUMMARY: AddressSanitizer: heap-buffer-overflow (<unknown module>) \n"
    )
    frames = {0x7F00000010: ("Vadd", "kernels/vadd.cc:12")}
    assert sanitizer_reports.symbolize(text, frames).splitlines() == [
        "WRITE of size 4 at 0x1 thread T0",
        "    #0 0x7f00000010 in Vadd kernels/vadd.cc:12",
        "    #1 0x7f00000020  (<unknown module>)",
        "SUMMARY: AddressSanitizer: heap-buffer-overflow kernels/vadd.cc:12 in Vadd",
    ]


def test_address_in_process_says_which_test_ended_pytest(project: Project) -> None:
    kernel_ini(project, "g++", isolation="none")
    result = project.pytester.runpytest_subprocess("--orcjit-sanitize=address", "-k", "vadd")
    # AddressSanitizer ends the process; the report goes to the stderr pytest started with.
    assert result.ret == 1
    result.stderr.fnmatch_lines(
        [
            "orcjit: AddressSanitizer ends pytest in test_kernels.py::test_vadd_past_the_end:",
            "*ERROR: AddressSanitizer: heap-buffer-overflow*",
            f"    #0 0x* in Vadd kernels/overflow.cc:{WRITE_LINE}",
        ]
    )


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        ("-fsanitize=address", "(the AddressSanitizer runtime, which must be the first library of "
         "the process): run pytest with --orcjit-sanitize=address"),
        ("-fsanitize=undefined", "(the UndefinedBehaviorSanitizer runtime): compile with "
         "--orcjit-sanitize=undefined"),
    ],
)  # fmt: skip
def test_the_api_says_how_to_get_a_missing_runtime(
    kernels: Any, session: api.ExecutionSession, flag: str, says: str
) -> None:
    if sanitize.address_loaded():
        pytest.skip(PRELOADED)
    lib = session.create_library("sanitized")
    lib.add(kernels.object("sanitize_overflow.cc", flag, compiler="g++"))
    with pytest.raises(RuntimeError, match=re.escape(says)):
        lib.get_function("add_one")


def test_loading_the_asan_runtime_late_is_refused_not_fatal() -> None:
    if sanitize.address_loaded():
        pytest.skip(PRELOADED)
    with pytest.raises(ValueError, match="must be the first library of the process"):
        api.load_shared_library("asan", "g++")
    with pytest.raises(ValueError, match="must be the first library"):
        shared_libraries.find(sanitize.address_runtime(["g++"]))


def test_condense_leaves_out_the_interpreter_and_the_shadow_bytes() -> None:
    text = (
        "    #0 0x10 in Vadd kernels/vadd.cc:12\n"
        "    #1 0x20 in _PyObject_MakeTpCall Objects/call.c:214\n"
        "    #2 0x30 in _PyEval_EvalFrameDefault Python/ceval.c:4769\n"
        "    #3 0x40 in _start (/usr/bin/python3+0x1080)\n"
        "\n"
        "SUMMARY: AddressSanitizer: heap-buffer-overflow kernels/vadd.cc:12 in Vadd\n"
        "Shadow bytes around the buggy address:\n"
        "  0x0c0680012890: fa fa 00 00\n"
        "=>0x0c06800128a0: 00 00[fa]fa\n"
        "Shadow byte legend (one shadow byte represents 8 application bytes):\n"
        "  Addressable:           00\n"
        "==4811==ABORTING"
    )
    assert sanitizer_reports.condense(text).splitlines() == [
        "    #0 0x10 in Vadd kernels/vadd.cc:12",
        "    ... 3 more frames (the Python interpreter's)",
        "",
        "SUMMARY: AddressSanitizer: heap-buffer-overflow kernels/vadd.cc:12 in Vadd",
        "(shadow bytes left out)",
        "==4811==ABORTING",
    ]
