"""Crash reports that name the kernel: a process that runs JIT code and dies by a signal says
which signal, the fault address and pc, and its native stack with the kernel's frames named
(``csrc/crash_handler.h``, ``csrc/jit_symbolizer.h``); hangs and Ctrl-C show where a forked test
was. The kernels are ``tests/kernels/misbehave.c``; each fault is on a line marked "faults here".

Every plugin test runs pytest in a subprocess (``runpytest_subprocess``): forking inside an
in-process pytester would fork the outer run too, and a crash in ``none`` isolation ends it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from isolation_helpers import (
    crash_line,
    failed_line,
    wide_terminal,  # noqa: F401 (autouse: short summary lines in full)
)

from pytest_orcjit import api
from pytest_orcjit.crash_reports import (
    INTERRUPT_MESSAGE,
    NATIVE_REPORT_START,
    TIMEOUT_MESSAGE,
    native_reports,
)

KERNEL = Path(__file__).parent / "kernels" / "misbehave.c"
# kernel export -> (function that faults, signal, what the report says of the fault)
CRASHES = {
    "null_write": ("NullWrite", signal.SIGSEGV, "access to unmapped address 0x0, at pc 0x*"),
    "bus_error": ("BusError", signal.SIGBUS, "bus error at 0x*, at pc 0x*"),
    "abort_now": ("Abort", signal.SIGABRT, "abort()"),
}
TEST_OF = {  # kernel export -> the test in CRASHING_TESTS that calls it
    "null_write": "test_null_write",
    "bus_error": "test_bus_error",
    "abort_now": "test_abort",
}
DEBUG = {"g": "-g", "nog": "-g0"}  # with and without debug information


def fault_line(function: str) -> int:
    """The line of misbehave.c marked as where ``function`` faults (or hangs)."""
    for number, line in enumerate(KERNEL.read_text().splitlines(), start=1):
        if f"{function} faults here" in line or f"{function} hangs here" in line:
            return number
    raise AssertionError(f"no line of {KERNEL} is marked for {function}")


def kernel_frame(function: str, debug: str) -> str:
    """The stack line that names ``function``: file:line with debug information, else +offset."""
    if debug == "-g":
        return f"  #* 0x* {function} (*misbehave.c:{fault_line(function)})"
    return f"  #* 0x* {function}+0x* (*misbehave.c)"


def report_lines(function: str, signum: signal.Signals, fault: str, debug: str) -> list[str]:
    """The crash handler's report of a kernel fault, as fnmatch lines."""
    return [
        f"{NATIVE_REPORT_START}{signum.name} ({fault}) in pid *, thread *",
        "native stack, most recent call first:",
        kernel_frame(function, debug),
    ]


def make_project(pytester: pytest.Pytester, tests: str) -> None:
    pytester.makeini("[pytest]\norcjit_sources = kernels/*.c\n")
    pytester.mkdir("kernels")
    pytester.path.joinpath("kernels", KERNEL.name).write_text(KERNEL.read_text())
    pytester.makepyfile(test_kernels="import pytest\n" + textwrap.dedent(tests))


# --- the symbolizer, from the API -----------------------------------------------------------


@pytest.mark.parametrize("debug", DEBUG.values(), ids=DEBUG.keys())
def test_describe_jit_address_names_the_function(kernels, session, debug: str) -> None:
    lib = session.create_library()
    lib.add(kernels.object(KERNEL.name, debug))
    start = lib.null_write_address()
    described = api.describe_jit_address(start)
    assert described is not None
    if debug == "-g":
        # The function's first line: where its code starts.
        assert re.fullmatch(r"NullWrite \(.*misbehave\.c:\d+\)", described), described
    else:
        assert re.fullmatch(r"NullWrite\+0x0 \(.*misbehave\.c\)", described), described
    assert api.describe_jit_address(0) is None  # no JIT code there
    lib.close()
    assert api.describe_jit_address(start) is None  # nor once its library closed


@pytest.mark.parametrize("bad", [-1, "0x10", 1.5, None])
def test_describe_jit_address_refuses_what_is_no_address(bad: object) -> None:
    with pytest.raises(TypeError, match="address must be a non-negative int"):
        api.describe_jit_address(bad)  # type: ignore[arg-type]


def test_install_crash_handler_refuses_a_closed_descriptor(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "report", os.O_WRONLY | os.O_CREAT)
    os.close(fd)
    with pytest.raises(ValueError, match=f"{fd} is not an open file descriptor"):
        api.install_crash_handler(fd)


@pytest.mark.parametrize("debug", DEBUG.values(), ids=DEBUG.keys())
@pytest.mark.parametrize("export", CRASHES)
def test_a_process_that_crashes_in_jit_code_says_where(
    kernels, tmp_path: Path, export: str, debug: str
) -> None:
    function, signum, fault = CRASHES[export]
    script = tmp_path / "crash.py"
    script.write_text(
        "import sys\n"
        "from pytest_orcjit import create_session\n"
        "lib = create_session().create_library()\n"
        "lib.add(sys.argv[1])\n"
        "getattr(lib, sys.argv[2])()\n"
    )
    obj = kernels.object(KERNEL.name, debug)
    run = subprocess.run(
        [sys.executable, str(script), str(obj), export],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == -signum, run.stderr  # it still dies by its signal
    native, _ = native_reports(run.stderr.splitlines())
    pytest.LineMatcher(native).fnmatch_lines(report_lines(function, signum, fault, debug))


# --- the plugin: forked, in-process ---------------------------------------------------------


CRASHING_TESTS = """
def test_null_write(orcjit_lib):
    orcjit_lib.null_write()

def test_bus_error(orcjit_lib):
    orcjit_lib.bus_error()

def test_abort(orcjit_lib):
    orcjit_lib.abort_now()

def test_after(orcjit_lib):
    pass
"""


@pytest.mark.parametrize("debug", DEBUG.values(), ids=DEBUG.keys())
def test_forked_crash_reports_name_the_kernel(pytester: pytest.Pytester, debug: str) -> None:
    make_project(pytester, CRASHING_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--orcjit-isolation=fork", f"--orcjit-cflags={debug}"
    )
    result.assert_outcomes(failed=3, passed=1)
    for export, test in TEST_OF.items():
        function, signum, fault = CRASHES[export]
        # The report leads with the signal, then the stack, before the stderr tail.
        result.stdout.fnmatch_lines(
            [f"*_ {test} _*", crash_line(signum), "", *report_lines(function, signum, fault, debug)]
        )
    result.stdout.fnmatch_lines([failed_line("test_null_write", crash_line(signal.SIGSEGV))])


@pytest.mark.parametrize("debug", DEBUG.values(), ids=DEBUG.keys())
@pytest.mark.parametrize("export", CRASHES)
def test_in_process_crash_names_the_kernel(
    pytester: pytest.Pytester, export: str, debug: str
) -> None:
    test = TEST_OF[export]
    function, signum, fault = CRASHES[export]
    make_project(pytester, CRASHING_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--orcjit-isolation=none", f"--orcjit-cflags={debug}", "-k", test
    )
    assert result.ret == -signum  # the pytest process itself died
    # Written where pytest's faulthandler writes (stderr), before its Python stack.
    result.stderr.fnmatch_lines(
        [*report_lines(function, signum, fault, debug), "*", '*File "*test_kernels.py", line *'],
    )


def test_tb_line_and_short_point_at_the_test(pytester: pytest.Pytester) -> None:
    make_project(pytester, CRASHING_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--orcjit-isolation=fork", "--tb=line", "-k", "null_write"
    )
    line = 3  # of `def test_null_write` in test_kernels.py (after the import line and a blank)
    result.stdout.fnmatch_lines([f"*test_kernels.py:{line}: Failed: {crash_line(signal.SIGSEGV)}"])
    result.stdout.no_fnmatch_line("*isolation.py*")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--orcjit-isolation=fork", "--tb=short", "-k", "null_write"
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_null_write _*",
            f"test_kernels.py:{line}: in test_null_write",
            crash_line(signal.SIGSEGV),
        ]
    )


# --- hangs and interrupts -------------------------------------------------------------------


HANGING_TESTS = """
import os

def test_first(orcjit_lib):
    pass

@pytest.mark.orcjit(timeout=float(os.environ.get("HANG_TIMEOUT", "0")) or None)
def test_hangs(orcjit_lib):
    open(os.environ["HANG_STARTED"], "w").close()
    orcjit_lib.spin()

def test_never_runs(orcjit_lib):
    pass
"""


def test_a_timeout_shows_the_native_stack(pytester: pytest.Pytester, monkeypatch) -> None:
    make_project(pytester, HANGING_TESTS)
    monkeypatch.setenv("HANG_STARTED", str(pytester.path / "started"))
    monkeypatch.setenv("HANG_TIMEOUT", "1")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--orcjit-isolation=fork", "--orcjit-cflags=-g", "-k", "hangs"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_hangs _*",
            TIMEOUT_MESSAGE.format(timeout=1),
            "",
            f"{NATIVE_REPORT_START}SIGTERM (asked to terminate) in pid *",
            "native stack, most recent call first:",
            kernel_frame("Spin", "-g"),
        ]
    )


def test_ctrl_c_names_the_hung_test_and_shows_where_it_is(
    pytester: pytest.Pytester, monkeypatch
) -> None:
    make_project(pytester, HANGING_TESTS)
    started = pytester.path / "started"
    monkeypatch.setenv("HANG_STARTED", str(started))
    process = pytester.popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--orcjit-isolation=fork"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists():  # the test is in the kernel's endless loop (or about to be)
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the hanging test never started"
            time.sleep(0.05)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)  # Ctrl-C, to the pytest process alone
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    lines = pytest.LineMatcher(out.splitlines())
    assert process.returncode == pytest.ExitCode.INTERRUPTED, out
    lines.fnmatch_lines(
        [
            "*_ test_hangs _*",
            INTERRUPT_MESSAGE,
            "",
            f"{NATIVE_REPORT_START}SIGTERM (asked to terminate) in pid *",
            "native stack, most recent call first:",
            kernel_frame("Spin", "-g0"),
            "*",
            '*File "*test_kernels.py", line * in test_hangs',  # and its Python stack
            "*KeyboardInterrupt: while running test_kernels.py::test_hangs*",
        ]
    )
    lines.no_fnmatch_line("*test_never_runs*")
    assert os.path.exists(started)
