"""The fork server (``pytest_orcjit.forkserver``) as forked tests see it: children waiting
ahead and replaced when they die, scheduler policies, a new server where the old one died or
no longer matches the pytest process, and the work it does once for all its children.

Every test runs pytest in a subprocess (``runpytest_subprocess``): forking inside an
in-process pytester would fork the outer run too. Tests of optional Linux features skip,
naming the feature, where ``linux_features`` finds it missing.
"""

from __future__ import annotations

import signal
import textwrap

import pytest
from isolation_helpers import (
    LOG_EVENT,
    failed_line,
    make_tests,
    run_logging_events,
    wide_terminal,  # noqa: F401 (autouse: short summary lines in full)
)
from linux_features import requires_proc_children, requires_sched_batch

from pytest_orcjit.crash_reports import SERVER_MESSAGE


@requires_proc_children
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
            except (FileNotFoundError, ProcessLookupError):  # reaped before, or as, it was read
                return True

        def test_runs_anyway():
            pass
        """,
    )
    # (Were none next in line, the second test would time out: nothing would take its job.)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--orcjit-timeout=20")
    result.assert_outcomes(passed=2)


@requires_sched_batch
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
