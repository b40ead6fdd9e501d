"""Forked tests that do not report back: crashes, early exits and timeouts, and their reports.

Each fails the phase it happened in with a message that names the cause and ends with the
child's stderr tail (``pytest_orcjit.crash_reports``). Every test runs pytest in a subprocess
(``runpytest_subprocess``): forking inside an in-process pytester would fork the outer run too.
"""

from __future__ import annotations

import signal
import textwrap

import pytest
from isolation_helpers import (
    crash_line,
    failed_line,
    make_tests,
    wide_terminal,  # noqa: F401 (autouse: short summary lines in full)
)

from pytest_orcjit import forkserver
from pytest_orcjit.crash_reports import (
    CRASH_MESSAGE,
    EXIT_MESSAGE,
    STDERR_TAIL_HEADER,
    TIMEOUT_MESSAGE,
    condense_frames,
)


def test_each_signal_fails_its_test_and_the_run_goes_on(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import ctypes, os, signal

        def test_null_pointer():
            ctypes.string_at(0)

        @pytest.mark.parametrize("name", ["SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL"])
        def test_kill(name):
            os.kill(os.getpid(), getattr(signal, name))

        def test_abort():
            os.abort()

        def test_after_the_crashes():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # Six crashes, each one FAILED test; the last test still runs.
    result.assert_outcomes(failed=6, passed=1)
    result.stdout.fnmatch_lines(
        [
            failed_line("test_null_pointer", crash_line(signal.SIGSEGV)),
            failed_line("test_kill?SIGSEGV?", crash_line(signal.SIGSEGV)),
            failed_line("test_kill?SIGBUS?", crash_line(signal.SIGBUS)),
            failed_line("test_kill?SIGFPE?", crash_line(signal.SIGFPE)),
            failed_line("test_kill?SIGILL?", crash_line(signal.SIGILL)),
            failed_line("test_abort", crash_line(signal.SIGABRT)),
        ]
    )
    # faulthandler's dump of the aborting test is in the report, trimmed to the test's frame.
    result.stdout.fnmatch_lines(["*_ test_abort _*", "*lines of stderr:", "*in test_abort"])
    result.stdout.no_fnmatch_line("*_pytest*runner.py*")
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_crashing_jit_kernel_fails_only_its_test(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\norcjit_sources = kernels/*.c\n")
    pytester.mkdir("kernels")
    pytester.path.joinpath("kernels", "crash.c").write_text(
        textwrap.dedent(
            """\
            #include <stdio.h>
            #include <tvm/ffi/c_api.h>

            int __tvm_ffi_crash(void* self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result) {
              fprintf(stderr, "kernel about to write through NULL\\n");
              fflush(stderr);
              *(volatile int*)0 = 1;
              return 0;
            }

            int __tvm_ffi_one(void* self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result) {
              result->type_index = kTVMFFIInt;
              result->zero_padding = 0;
              result->v_int64 = 1;
              return 0;
            }
            """
        )
    )
    pytester.makepyfile(
        test_kernels="""
        def test_crash(orcjit_lib):
            orcjit_lib.crash()

        def test_after(orcjit_lib):
            assert orcjit_lib.one() == 1
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--orcjit-isolation=fork")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_crash _*",
            CRASH_MESSAGE.format(name="SIGSEGV", description="Segmentation fault"),
            "*",
            "*lines of stderr:",
            "kernel about to write through NULL",
            failed_line("test_crash", crash_line(signal.SIGSEGV)),
        ]
    )


def test_early_exit_and_stderr_tail(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import ctypes, os

        def test_os_exit():
            os._exit(3)

        def test_c_exit():
            os.write(2, b"last words\\n")  # below Python, as a kernel would write
            ctypes.CDLL(None).exit(4)

        def test_passes():
            pass
        """,
    )
    # stderr in pytest's capture files (fd), on the terminal (-s), left alone (sys)
    for args in ([], ["-s"], ["--capture=sys"]):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
        result.assert_outcomes(failed=2, passed=1)
        result.stdout.fnmatch_lines(
            [
                "*_ test_c_exit _*",
                EXIT_MESSAGE.format(status=4),
                "",
                STDERR_TAIL_HEADER.format(lines=1),
                "last words",
                failed_line("test_os_exit", EXIT_MESSAGE.format(status=3)),
                failed_line("test_c_exit", EXIT_MESSAGE.format(status=4)),
            ]
        )


def test_timeout_terminates_then_kills(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import signal, time

        @pytest.mark.orcjit(timeout=0.5)
        def test_sleeps():
            time.sleep(30)

        @pytest.mark.orcjit(timeout=0.2)
        def test_ignores_sigterm():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                pass

        def test_no_timeout_here():
            time.sleep(0.3)
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_sleeps _*",
            TIMEOUT_MESSAGE.format(timeout=0.5),
            "*",
            "*lines of stderr:",
            "*most recent call first*",  # faulthandler's dump on SIGTERM shows where it hung
            '*File "*test_forked.py", line * in test_sleeps',
            failed_line("test_sleeps", TIMEOUT_MESSAGE.format(timeout=0.5)),
            failed_line("test_ignores_sigterm", TIMEOUT_MESSAGE.format(timeout=0.2)),
        ]
    )


def test_timeout_from_the_command_line(pytester: pytest.Pytester) -> None:
    make_tests(pytester, "import time\ndef test_sleeps():\n    time.sleep(30)\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--orcjit-timeout=0.3")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([failed_line("test_sleeps", TIMEOUT_MESSAGE.format(timeout=0.3))])


def test_a_crash_fails_the_phase_it_happened_in(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import os

        @pytest.fixture
        def crashes_in_setup():
            os.abort()

        @pytest.fixture
        def crashes_in_teardown():
            yield
            os.abort()

        def test_setup_crash(crashes_in_setup):
            pass

        def test_teardown_crash(crashes_in_teardown):
            pass

        def test_call_crash():
            os.abort()
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    # The test whose teardown crashed passed its call: that report came back before the crash.
    result.assert_outcomes(passed=1, failed=1, errors=2)
    crash = crash_line(signal.SIGABRT)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_setup_crash*",
            crash,
            "*ERROR at teardown of test_teardown_crash*",
            crash,
            "*_ test_call_crash _*",
            crash,
        ]
    )
    result.stdout.fnmatch_lines(["PASSED *test_teardown_crash"])


def test_a_crash_in_an_xfail_test_is_xfailed(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import os

        @pytest.mark.xfail(reason="crashes until fixed")
        def test_known_crash():
            os.abort()

        @pytest.mark.xfail(reason="crashes until fixed", strict=True)
        def test_known_crash_strict():
            os.abort()

        @pytest.mark.xfail(raises=ValueError)
        def test_expects_another_failure():
            os.abort()

        @pytest.mark.xfail(False, reason="condition false")
        def test_not_xfailed():
            os.abort()
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rxf")
    result.assert_outcomes(xfailed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "XFAIL *test_known_crash - crashes until fixed",
            "XFAIL *test_known_crash_strict - crashes until fixed",
            failed_line("test_expects_another_failure", crash_line(signal.SIGABRT)),
            failed_line("test_not_xfailed", crash_line(signal.SIGABRT)),
        ]
    )


def test_condense_frames_keeps_the_test_and_drops_pytest() -> None:
    lines = [
        "Fatal Python error: Segmentation fault",
        "",
        "Current thread 0x1 (most recent call first):",
        '  File "/src/test_k.py", line 3 in test_k',
        '  File "/site/_pytest/python.py", line 166 in pytest_pyfunc_call',
        '  File "/site/pluggy/_callers.py", line 121 in _multicall',
        f'  File "{forkserver.__file__}", line 1 in _child_main',
        '  File "/src/conftest.py", line 7 in pytest_runtest_protocol',
        "",
        "!!!!!!! Segfault encountered !!!!!!!",
        *[f'  File "Python/ceval.c", line {n}, in f{n}' for n in range(20)],
    ]
    condensed = condense_frames(lines)
    assert condensed[:5] == [*lines[:4], ""]
    assert condensed[6:8] == [lines[10], lines[11]]
    assert condensed[-1] == "  ... 8 more frames"
