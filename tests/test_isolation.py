"""The fork boundary (pytest_orcjit.isolation), driven through the plugin's marker and options.

Every test runs pytest in a subprocess (``runpytest_subprocess``): forking
inside an in-process pytester would fork the outer test run too. Tests without
orcjit fixtures are forked with ``@pytest.mark.orcjit(isolation="fork")``.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from pytest_orcjit.isolation import (
    CRASH_MESSAGE,
    EXIT_MESSAGE,
    SERVER_MESSAGE,
    STDERR_TAIL_HEADER,
    TIMEOUT_MESSAGE,
    _condense_frames,
)

FORK = 'pytestmark = pytest.mark.orcjit(isolation="fork")\n'


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short summary lines in full, whatever the terminal of the outer run."""
    monkeypatch.setenv("COLUMNS", "200")


def crash_line(signum: signal.Signals) -> str:
    return CRASH_MESSAGE.format(name=signum.name, description=signal.strsignal(signum))


def failed_line(test: str, message: str) -> str:
    """The short-summary line of a failed test (pytest 8 prefixes the message with 'Failed: ')."""
    return f"FAILED *{test} - *{message}"


def make_tests(pytester: pytest.Pytester, body: str, name: str = "test_forked") -> None:
    pytester.makepyfile(**{name: "import pytest\n" + FORK + textwrap.dedent(body)})


LOG_EVENT = """\
import os

def log(event):
    with open(os.environ["EVENT_LOG"], "a") as f:
        f.write(f"{event} {os.getpid()}\\n")
"""
"""Conftest code: ``log(event)`` writes "event pid" lines to the file in EVENT_LOG."""


def run_logging_events(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[pytest.RunResult, list[list[str]]]:
    """Run pytest in a subprocess with EVENT_LOG set: its result, and the [event, pid] logged."""
    log = pytester.path / "events.log"
    monkeypatch.setenv("EVENT_LOG", str(log))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    events = [line.rsplit(maxsplit=1) for line in log.read_text().splitlines()]
    return result, events


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


def test_output_capture_skip_xfail_params_tmp_path_warnings(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import sys, warnings

        def test_capsys(capsys):
            print("to capsys")
            assert capsys.readouterr().out == "to capsys\\n"

        def test_capfd(capfd):
            sys.stdout.write("to capfd\\n")
            assert capfd.readouterr().out == "to capfd\\n"

        def test_fails_with_output():
            print("shown on failure")
            print("also stderr", file=sys.stderr)
            assert 1 == 2

        @pytest.mark.skip(reason="skipped in the child")
        def test_skip():
            pass

        @pytest.mark.skipif(True, reason="skipif in the child")
        def test_skipif():
            pass

        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert False

        @pytest.mark.xfail(strict=True)
        def test_xpass_strict():
            pass

        @pytest.mark.parametrize("n", [1, 2], ids=["one", "two"])
        def test_param(n, tmp_path):
            (tmp_path / "f").write_text(str(n))
            assert (tmp_path / "f").read_text() == str(n)

        def test_warns():
            warnings.warn("from the child", UserWarning)
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=5, failed=2, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_with_output _*",
            "E       assert 1 == 2",
            "*- Captured stdout call -*",
            "shown on failure",
            "*- Captured stderr call -*",
            "also stderr",
            "*warnings summary*",
            "test_forked.py::test_warns",
            "*UserWarning: from the child",
            "PASSED *test_param[[]one[]]",
            "PASSED *test_param[[]two[]]",
            "SKIPPED * skipped in the child",
            "SKIPPED * skipif in the child",
            "XFAIL *test_xfail - known",
            "FAILED *test_fails_with_output - assert 1 == 2",
            "FAILED *test_xpass_strict*",
        ]
    )
    # -s: the child writes straight to the terminal, stdout and stderr alike.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "-k", "output")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*shown on failure*"])
    result.stderr.fnmatch_lines(["also stderr"])


def test_wider_scoped_fixtures_set_up_per_forked_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(
        """
        import os, pytest

        def log(event):
            with open(os.environ["FIXTURE_LOG"], "a") as f:
                f.write(event + "\\n")

        @pytest.fixture(scope="session")
        def session_list():
            log("setup session")
            yield []
            log("teardown session")

        @pytest.fixture(scope="module")
        def module_list():
            log("setup module")
            yield []
            log("teardown module")
        """
    )
    body = """
        @pytest.mark.orcjit(isolation="none")
        def test_in_parent(module_list):
            module_list.append("parent")

        def test_a(session_list, module_list):
            session_list.append("a")
            module_list.append("a")
            assert module_list == ["parent", "a"]

        def test_b(session_list, module_list):
            assert session_list == []  # test_a's change stayed in test_a's child
            assert module_list == ["parent"]

        class TestClass:
            @pytest.fixture(scope="class")
            def class_list(self):
                return []

            def test_c(self, class_list):
                class_list.append("c")

            def test_d(self, class_list):
                assert class_list == []
        """
    make_tests(pytester, body, name="test_one")
    make_tests(
        pytester, "def test_e(module_list):\n    assert module_list == []\n", name="test_two"
    )
    log = pytester.path / "fixtures.log"
    monkeypatch.setenv("FIXTURE_LOG", str(log))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    result.stdout.no_fnmatch_line("*torn down properly*")
    assert log.read_text().splitlines() == [
        "setup module",  # test_in_parent, in the parent; test_a and test_b share it
        "setup session",  # test_a's child
        "teardown session",
        "setup session",  # test_b's child
        "teardown session",
        "teardown module",  # the parent's, once, when test_one.py ends
        "setup module",  # test_e's child
        "teardown module",
    ]


OVERRIDE_ORCJIT_SESSION = """
@pytest.fixture
def orcjit_session():
    from pytest_orcjit import create_session

    with create_session() as session:
        yield session
"""


@pytest.mark.parametrize("override", [False, True], ids=["plugin", "conftest_override"])
def test_orcjit_session_is_set_up_once_in_the_pytest_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, override: bool
) -> None:
    conftest = """
        import pytest

        def pytest_sessionstart():
            log("pytest")

        @pytest.hookimpl(wrapper=True)
        def pytest_fixture_setup(fixturedef):
            log(f"setup {fixturedef.argname}")
            return (yield)

        def pytest_fixture_post_finalizer(fixturedef):
            if fixturedef.cached_result is not None:
                log(f"teardown {fixturedef.argname}")
        """
    override_fixture = OVERRIDE_ORCJIT_SESSION if override else ""
    pytester.makeconftest(LOG_EVENT + textwrap.dedent(conftest) + override_fixture)
    make_tests(
        pytester,
        """
        @pytest.mark.parametrize("n", range(3))
        def test_uses_the_session(orcjit_session, n):
            assert orcjit_session.create_library().name
        """,
    )
    result, events = run_logging_events(pytester, monkeypatch)
    result.assert_outcomes(passed=3, warnings=0)  # pytest 9.1 warns of fixtures set up off-stack
    pytest_pid = events[0][1]
    setups = [pid for event, pid in events if event == "setup orcjit_session"]
    if override:  # a conftest's fixture, function-scoped here: each child sets up its own
        assert len(setups) == 3
        assert pytest_pid not in setups
    else:  # set up before the first fork, inherited by every child, torn down once at the end
        assert [event for event in events if "orcjit_session" in event[0]] == [
            ["setup orcjit_session", pytest_pid],
            ["teardown orcjit_session", pytest_pid],
        ]


def test_static_constructors_run_in_each_forked_test_only(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fork server links the objects once before its first fork (to prepare them for its
    # children) but runs none of their code: each constructor and destructor runs in a child.
    pytester.makeini("[pytest]\norcjit_sources = kernels/*.c\n")
    pytester.mkdir("kernels")
    pytester.path.joinpath("kernels", "logged.c").write_text(
        textwrap.dedent(
            """\
            #include <stdio.h>
            #include <stdlib.h>
            #include <unistd.h>
            #include <tvm/ffi/c_api.h>

            static void log_event(const char* event) {
              FILE* log = fopen(getenv("EVENT_LOG"), "a");
              fprintf(log, "%s %d\\n", event, (int)getpid());
              fclose(log);
            }
            __attribute__((constructor)) static void constructed(void) { log_event("ctor"); }
            __attribute__((destructor)) static void destroyed(void) { log_event("dtor"); }

            int __tvm_ffi_pid(void* self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result) {
              result->type_index = kTVMFFIInt;
              result->zero_padding = 0;
              result->v_int64 = getpid();
              return 0;
            }
            """
        )
    )
    pytester.makepyfile(
        test_kernels="""
        import os, pytest

        @pytest.mark.parametrize("n", range(3))
        def test_in_a_child(orcjit_lib, n):
            with open(os.environ["EVENT_LOG"], "a") as log:
                log.write(f"test {orcjit_lib.pid()}\\n")
        """
    )
    result, events = run_logging_events(pytester, monkeypatch)
    result.assert_outcomes(passed=3)
    tests = [pid for event, pid in events if event == "test"]
    assert len(set(tests)) == 3
    for test in tests:
        assert [event for event, pid in events if pid == test] == ["ctor", "test", "dtor"]
    assert len(events) == 9  # nothing ran anywhere else


def test_setup_show_keeps_every_result_line(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        @pytest.mark.parametrize("n", range(3))
        def test_uses_the_session(orcjit_session, n):
            pass
        """,
    )
    # --setup-show resumes pytest's capture after each line it shows, in the pytest process too.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "--setup-show")
    result.assert_outcomes(passed=3)
    assert result.stdout.str().count("SETUP    S orcjit_session") == 1
    assert result.stdout.str().count("PASSED") == 3


def test_parent_teardown_output_is_captured_in_the_last_forked_test(
    pytester: pytest.Pytester,
) -> None:
    make_tests(
        pytester,
        """
        @pytest.fixture(scope="module")
        def held_by_parent():
            yield
            print("module teardown output")

        @pytest.mark.orcjit(isolation="none")
        def test_in_parent(held_by_parent):
            pass

        def test_forked_last(held_by_parent):
            assert False
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    # As without the fork: a section of the report, not a line on the terminal.
    result.stdout.fnmatch_lines(["*- Captured stdout teardown -*", "module teardown output"])
    result.stdout.no_fnmatch_line(".Fmodule teardown output")


def test_parent_teardown_error_is_the_last_forked_tests_error(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        @pytest.fixture(scope="module")
        def held_by_parent():
            yield
            raise RuntimeError("module teardown failed")

        @pytest.mark.orcjit(isolation="none")
        def test_in_parent(held_by_parent):
            pass

        def test_forked_last(held_by_parent):
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # As without the fork: the module's teardown runs once, after its last test.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_forked_last*", "E       RuntimeError: module teardown failed"]
    )


def test_exitfirst_maxfail_junitxml_and_last_failed(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import os

        def test_passes():
            pass

        def test_crashes():
            os.kill(os.getpid(), 11)

        def test_fails():
            assert False

        def test_passes_too():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-x")
    # -x stops after the first crash, fed by the report logged in the parent.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    result = pytester.runpytest_subprocess("--maxfail=2", "--junitxml=report.xml")
    result.assert_outcomes(passed=1, failed=2)
    cases = {
        case.get("name", ""): case
        for case in ET.parse(pytester.path / "report.xml").iter("testcase")
    }
    assert sorted(cases) == ["test_crashes", "test_fails", "test_passes"]
    failure = cases["test_crashes"].find("failure")
    assert failure is not None
    assert CRASH_MESSAGE.format(name="SIGSEGV", description="Segmentation fault") in (
        failure.get("message") or ""
    )
    # --lf: the cache plugin saw the crash as a failure.
    result = pytester.runpytest_subprocess("--lf", "-v")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*run-last-failure: rerun previous 2 failures*"])


def test_xdist(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    make_tests(
        pytester,
        """
        import os, warnings

        @pytest.mark.parametrize("n", range(6))
        def test_passes(n):
            warnings.warn(f"warning {n}")

        @pytest.mark.parametrize("n", range(2))
        def test_crashes(n):
            os.abort()
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=6, failed=2)
    result.stdout.fnmatch_lines(["*warnings summary*", "*UserWarning: warning ?"])
    result.stdout.fnmatch_lines([failed_line("test_crashes?[01]?", crash_line(signal.SIGABRT))] * 2)


def test_pytest_exit_and_large_reports(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        def test_large_output():
            print("x" * 1_000_000)  # far beyond a pipe's buffer
            assert False

        def test_exits():
            pytest.exit("stop here", returncode=7)

        def test_never_runs():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*Exit: stop here*"])
    assert result.ret == 7
    result.stdout.fnmatch_lines(["*1 failed*"])
    result.stdout.no_fnmatch_line("*1 passed*")


@pytest.mark.parametrize("killed", ["next_in_line", "all"])
def test_waiting_children_that_die_are_replaced(pytester: pytest.Pytester, killed: str) -> None:
    # The first test kills its siblings, the children the fork server keeps waiting for the next
    # tests (the oldest, next in line, or all of them): the server forks others, the next in line
    # passes its turn on as it dies, and the next test runs.
    make_tests(
        pytester,
        f"""
        import os, signal, time
        from pytest_orcjit.forkserver import AHEAD

        def test_kills_waiting_children():
            server = os.getppid()
            siblings = []
            while len(siblings) < AHEAD:  # the server forks them as this test starts
                with open(f"/proc/{{server}}/task/{{server}}/children") as f:
                    siblings = [int(pid) for pid in f.read().split() if int(pid) != os.getpid()]
                time.sleep(0.01)
            siblings.sort(key=started)
            for pid in siblings[:1] if {killed!r} == "next_in_line" else siblings:
                os.kill(pid, signal.SIGKILL)
                # Gone before the next job is written: a child killed as it reads its job
                # would take the job with it (the limit the README states).
                while not gone(pid):
                    time.sleep(0.01)

        def started(pid):
            with open(f"/proc/{{pid}}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[19])

        def gone(pid):
            try:
                with open(f"/proc/{{pid}}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie
            except FileNotFoundError:
                return True

        def test_runs_anyway():
            pass
        """,
    )
    # (Were none next in line, the second test would time out: nothing would take its job.)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--orcjit-timeout=20")
    result.assert_outcomes(passed=2)


def test_the_fork_server_yields_to_the_tests_it_forks(pytester: pytest.Pytester) -> None:
    # The server forks as SCHED_BATCH, so that it never preempts a running test; a child runs
    # its test as an ordinary process, as the test would run without the fork.
    make_tests(
        pytester,
        """
        import os

        def test_policies():
            assert os.sched_getscheduler(0) == os.SCHED_OTHER
            assert os.sched_getscheduler(os.getppid()) == os.SCHED_BATCH
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_dead_fork_server_fails_one_test_and_is_started_again(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import os, signal, time

        def test_kills_the_server():
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)  # killed with it

        def test_runs_under_a_new_server():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--orcjit-timeout=20")
    result.assert_outcomes(passed=1, failed=1)
    message = SERVER_MESSAGE.format(status=signal.SIGKILL.value)
    result.stdout.fnmatch_lines([failed_line("test_kills_the_server", message)])


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


def test_forked_tests_draw_their_own_random_numbers_and_run_threads(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tests(
        pytester,
        """
        import os, random, threading

        @pytest.mark.parametrize("n", range(3))
        def test_draws(n):
            with open(os.environ["DRAWS"], "a") as f:
                f.write(f"{random.random()!r}\\n")
            ran = []
            thread = threading.Thread(target=ran.append, args=(n,))
            thread.start()
            thread.join()
            assert ran == [n]
            assert threading.current_thread() is threading.main_thread()
        """,
    )
    draws = pytester.path / "draws"
    monkeypatch.setenv("DRAWS", str(draws))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    # Children of one fork server, each re-seeded as os.fork() would.
    assert len(set(draws.read_text().split())) == 3


def test_children_inherit_each_items_location(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    conftest = """
        import pytest

        def pytest_sessionstart():
            log("pytest")

        reportinfo = pytest.Function.reportinfo

        def logged_reportinfo(self):
            log("reportinfo")
            return reportinfo(self)

        pytest.Function.reportinfo = logged_reportinfo
        """
    pytester.makeconftest(LOG_EVENT + textwrap.dedent(conftest))
    make_tests(
        pytester,
        """
        @pytest.mark.parametrize("n", range(3))
        def test_forked(n):
            pass
        """,
    )
    result, events = run_logging_events(pytester, monkeypatch)
    result.assert_outcomes(passed=3)
    pytest_pid = events[0][1]
    # Worked out once per item, in the pytest process, before the fork server started.
    assert [event for event in events if event[0] == "reportinfo"] == [
        ["reportinfo", pytest_pid]
    ] * 3


def test_children_find_report_serialization_warm(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    conftest = """
        # Called for each type os.PathLike's caches do not know yet.
        subclasshook = os.PathLike.__subclasshook__.__func__

        def logged_subclasshook(cls, subclass):
            log(f"subclasshook:{subclass.__name__}")
            return subclasshook(cls, subclass)

        os.PathLike.__subclasshook__ = classmethod(logged_subclasshook)
        """
    pytester.makeconftest(LOG_EVENT + textwrap.dedent(conftest))
    make_tests(
        pytester,
        """
        import os

        @pytest.mark.parametrize("n", range(3))
        def test_forked(n):
            with open(os.environ["EVENT_LOG"], "a") as f:
                f.write(f"test {os.getpid()}\\n")
        """,
    )
    result, events = run_logging_events(pytester, monkeypatch)
    result.assert_outcomes(passed=3)
    children = {pid for event, pid in events if event == "test"}
    assert len(children) == 3
    # pytest asks isinstance(value, os.PathLike) of each field of each report it serializes:
    # the fork server did once what every child would do again.
    assert [event for event, pid in events if pid in children] == ["test"] * 3


def test_each_report_is_logged_once_in_the_pytest_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_order="""
        import pytest

        def test_in_process():
            pass

        @pytest.mark.orcjit(isolation="fork")
        @pytest.mark.parametrize("n", range(3))
        def test_forked(n):
            pass
        """
    )
    # The in-process test logs first: the hook children log to is then one pytest looked up.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    lines = [line for line in result.outlines if line.startswith("test_order.py::")]
    assert [re.sub(r"\s+\[\s*\d+%\]$", "", line) for line in lines] == [
        "test_order.py::test_in_process PASSED",
        "test_order.py::test_forked[0] PASSED",
        "test_order.py::test_forked[1] PASSED",
        "test_order.py::test_forked[2] PASSED",
    ]


def test_subtests_are_reported_as_in_process(pytester: pytest.Pytester) -> None:
    pytest.importorskip("_pytest.subtests", reason="subtests are built into pytest 9")
    make_tests(
        pytester,
        """
        import os

        def test_subtests(subtests):
            for n in range(3):
                with subtests.test(msg=f"case {n}"):
                    assert n != 1

        def test_crash_after_a_subtest(subtests):
            with subtests.test(msg="before the crash"):
                pass
            os.abort()
        """,
    )

    def run(*args: str) -> tuple[list[str], dict[str, int]]:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *args)
        lines = [
            re.sub(r"\s+\[\s*\d+%\]$", "", line)  # the progress column
            for line in result.outlines
            if line.startswith("test_forked.py::test_subtests ")
        ]
        return lines, result.parseoutcomes()

    in_process = run("-k", "test_subtests", "--orcjit-isolation=none")
    assert in_process == (
        [
            "test_forked.py::test_subtests SUBPASSED[case 0]",
            "test_forked.py::test_subtests SUBFAILED[case 1]",
            "test_forked.py::test_subtests SUBPASSED[case 2]",
            "test_forked.py::test_subtests FAILED",
        ],
        {"failed": 2, "subtests": 2, "deselected": 1},
    )
    # Each subtest crosses as its own report, logged once; the test fails for its failed subtest.
    assert run("-k", "test_subtests") == in_process
    pytest.importorskip("xdist")
    outcomes = run("-k", "test_subtests", "-n", "2")[1]
    assert (outcomes["failed"], outcomes["subtests"]) == (2, 2)
    # A crash after a subtest fails the call, not the teardown.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "-k", "crash")
    result.stdout.fnmatch_lines(
        [
            "*::test_crash_after_a_subtest SUBPASSED?before the crash?*",
            "*::test_crash_after_a_subtest FAILED*",
            "*_ test_crash_after_a_subtest _*",
            crash_line(signal.SIGABRT),
        ]
    )
    result.stdout.fnmatch_lines(["*1 failed, 1 deselected, 1 subtests passed*"])


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


def test_each_forked_test_gets_its_own_warning_filters(pytester: pytest.Pytester) -> None:
    # Children come from one fork server, itself forked inside the first test's warning
    # context: the second test must not inherit the first one's "error" filter.
    make_tests(
        pytester,
        """
        import warnings

        @pytest.mark.filterwarnings("error::UserWarning")
        def test_strict():
            with pytest.raises(UserWarning):
                warnings.warn("raised here")

        def test_lenient():
            warnings.warn("only recorded here")

        @pytest.mark.filterwarnings("ignore::UserWarning")
        def test_ignores():
            warnings.warn("not shown")
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_lenient*", "*UserWarning: only recorded here"])
    result.stdout.no_fnmatch_line("*not shown*")


def test_forked_tests_see_the_parent_as_it_is_when_they_start(pytester: pytest.Pytester) -> None:
    # An in-process test changes what later forked tests inherit; a forked test's changes
    # stay in its child, and the next forked test starts from the pytest process again.
    make_tests(
        pytester,
        """
        import os

        STATE = []

        @pytest.mark.orcjit(isolation="none")
        def test_in_process_first():  # the module stays set up in the pytest process
            pass

        def test_forked_first():
            STATE.append("forked")

        def test_forked_sees_nothing_of_the_first():
            assert STATE == []

        @pytest.mark.orcjit(isolation="none")
        def test_in_process():
            STATE.append("in-process")

        def test_forked_after():
            assert STATE == ["in-process"]
            STATE.append("forked")

        def test_forked_last():
            assert STATE == ["in-process"]
            with open("server.pid", "w") as f:
                f.write(str(os.getppid()))
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    # The fork server (the forked tests' parent) is gone once the run is over.
    server = int((pytester.path / "server.pid").read_text())
    assert server > 1
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)


def test_the_backtrace_symbolizer_is_built_once_a_forked_test_needed_it(
    pytester: pytest.Pytester,
) -> None:
    # The pytest process builds it after the first child that turned a tvm-ffi error into a
    # Python exception; the next forked test runs under a new fork server, which inherits it.
    # A Python error needs no symbolizer; once built, nothing restarts the server again.
    make_tests(
        pytester,
        """
        import os

        def note_server():
            with open("servers.txt", "a") as f:
                f.write(f"{os.getppid()}\\n")

        def raise_tvm_ffi_error(session):
            with pytest.raises(Exception, match="missing"):
                session.create_library().get_function("missing")

        def test_passes(orcjit_session):
            note_server()

        def test_python_error(orcjit_session):
            note_server()
            with pytest.raises(ZeroDivisionError):
                1 / 0

        def test_tvm_ffi_error(orcjit_session):
            note_server()
            raise_tvm_ffi_error(orcjit_session)

        def test_tvm_ffi_error_again(orcjit_session):
            note_server()
            raise_tvm_ffi_error(orcjit_session)

        def test_after(orcjit_session):
            note_server()
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    servers = (pytester.path / "servers.txt").read_text().split()
    assert servers[0] == servers[1] == servers[2] != servers[3] == servers[4]


def test_condense_frames_keeps_the_test_and_drops_pytest() -> None:
    lines = [
        "Fatal Python error: Segmentation fault",
        "",
        "Current thread 0x1 (most recent call first):",
        '  File "/src/test_k.py", line 3 in test_k',
        '  File "/site/_pytest/python.py", line 166 in pytest_pyfunc_call',
        '  File "/site/pluggy/_callers.py", line 121 in _multicall',
        f'  File "{sys.modules["pytest_orcjit.forkserver"].__file__}", line 1 in _child_main',
        '  File "/src/conftest.py", line 7 in pytest_runtest_protocol',
        "",
        "!!!!!!! Segfault encountered !!!!!!!",
        *[f'  File "Python/ceval.c", line {n}, in f{n}' for n in range(20)],
    ]
    condensed = _condense_frames(lines)
    assert condensed[:5] == [*lines[:4], ""]
    assert condensed[6:8] == [lines[10], lines[11]]
    assert condensed[-1] == "  ... 8 more frames"
