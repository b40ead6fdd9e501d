"""The reports of a forked test whose child did not report back: it crashed, exited or timed out.

The phase the child was in fails (setup if it sent no report, the call after a
setup that passed, else the teardown) with a report made by pytest's own
``pytest_runtest_makereport`` from a pytrace-less failure, so that an ``xfail``
mark applies. Its message names the cause (``CRASH_MESSAGE``, ``EXIT_MESSAGE``,
``TIMEOUT_MESSAGE``, ``SERVER_MESSAGE``) and ends with the last lines the child
wrote to stderr, stack dumps trimmed to the frames that matter. Used by
:mod:`pytest_orcjit.isolation`; ``docs/architecture.md`` describes the fork boundary.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from typing import TYPE_CHECKING, Literal

import pytest

from . import pytest_internals

if TYPE_CHECKING:
    from .isolation import ChildRun

CRASH_MESSAGE = "crashed with signal {name} ({description})"
EXIT_MESSAGE = "exited with status {status} before reporting"
TIMEOUT_MESSAGE = "timeout after {timeout:g} s"
INTERRUPT_MESSAGE = "interrupted (Ctrl-C) while running; where the test was:"
SERVER_MESSAGE = "the orcjit fork server exited unexpectedly (wait status {status})"
STDERR_TAIL_HEADER = "last {lines} lines of stderr:"
TAIL_LINES = 40
FRAMES_KEPT = 12  # of each stack dump in the stderr tail
NATIVE_REPORT_START = "orcjit: signal "  # csrc/crash_handler.h's kCrashReportStart
_NATIVE_REPORT_LINES = ("native stack", "  #", "  ...", "  (")  # the lines after it

_FRAME = re.compile(r'\s+File "(?P<path>[^"]*)", line \d+,? in ')
_PYTEST_PATHS = (f"{os.sep}_pytest{os.sep}", f"{os.sep}pluggy{os.sep}", "<frozen runpy>")
_BOUNDARY_FILES = tuple(  # frames of the fork boundary, and all below them, are the session loop's
    os.path.join(os.path.dirname(__file__), name)
    for name in ("isolation.py", "forkserver.py", "pytest_internals.py")
)


def describe(child: ChildRun) -> str:
    """Why the child did not report back, in one line."""
    if child.interrupted:
        return INTERRUPT_MESSAGE
    if child.timed_out:
        return TIMEOUT_MESSAGE.format(timeout=child.timeout)
    if child.status is None:
        return SERVER_MESSAGE.format(status=child.server_status)
    if os.WIFSIGNALED(child.status):
        signum = os.WTERMSIG(child.status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        return CRASH_MESSAGE.format(name=name, description=signal.strsignal(signum))
    return EXIT_MESSAGE.format(status=os.waitstatus_to_exitcode(child.status))


def report_crashes_here(config: pytest.Config) -> None:
    """Make a crash of the pytest process itself (``--orcjit-isolation=none``) show its stack.

    Installs the native crash handler (``api.install_crash_handler``) on top,
    writing where pytest's faulthandler writes, once the native core is loaded
    (nothing runs JIT code before that). Cheap enough to call for every test.
    """
    if "pytest_orcjit._ffi_api" not in sys.modules:
        return
    from . import api

    fd = pytest_internals.faulthandler_fd(config)
    api.install_crash_handler(2 if fd is None else fd)


def failure_reports(
    item: pytest.Item, child: ChildRun, done: list[pytest.TestReport]
) -> list[pytest.TestReport]:
    """The reports that complete ``done`` for a child that died, timed out or exited early.

    The phase it was in fails: setup when it sent nothing, the call after a
    setup that passed, else the teardown.
    """
    when: Literal["setup", "call", "teardown"]
    if not done:
        when = "setup"
    elif done[-1].when == "setup" and done[-1].passed:
        when = "call"
    else:
        when = "teardown"
    sections: list[tuple[str, str]] = []
    stderr = ""
    captured = pytest_internals.read_global_capture(item.config)
    if captured is not None:
        # With --capture=fd the dead child's output is still in pytest's capture files.
        out, stderr = captured
        if out:
            sections.append((f"Captured stdout {when}", out))
    native, rest = native_reports((stderr + child.stderr_text()).splitlines())
    lines = condense_frames(rest)
    tail = lines[-TAIL_LINES:]
    if len(tail) < len(lines) and stderr:
        sections.append((f"Captured stderr {when}", stderr))
    longrepr = "\n".join([describe(child), *(["", *native] if native else [])])
    if tail:
        header = STDERR_TAIL_HEADER.format(lines=len(tail))
        longrepr = "\n".join([longrepr, "", header, *tail])
    # Made by pytest's own hook from a pytrace-less failure: the message is the
    # whole longrepr and shows in the short summary on pytest 8 and 9 alike. An
    # xfail mark (evaluated in the child, which is gone) makes it xfailed, as it
    # would any other failure of the test.
    with contextlib.suppress(Exception):  # a bad condition already failed the child's setup
        pytest_internals.evaluate_xfail(item)
    call = pytest.CallInfo.from_call(lambda: pytest.fail(longrepr, pytrace=False), when)
    crash: pytest.TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    _point_at_test(item, crash)
    stop = time.time()
    crash.sections = [*crash.sections, *sections]
    crash.duration, crash.start, crash.stop = child.duration, stop - child.duration, stop
    if when == "teardown":
        return [crash]
    teardown = pytest.TestReport(
        nodeid=item.nodeid,
        location=item.location,
        keywords=crash.keywords,
        outcome="passed",
        longrepr=None,
        when="teardown",
        sections=crash.sections,
        start=stop,
        stop=stop,
        user_properties=crash.user_properties,
    )
    return [crash, teardown]


def native_reports(lines: list[str]) -> tuple[list[str], list[str]]:
    """Split the crash handler's reports (``csrc/crash_handler.h``) from the rest of stderr.

    A report is a line starting with ``NATIVE_REPORT_START`` and the stack
    lines after it; it goes to the top of the test's report, whole.
    """
    native: list[str] = []
    rest: list[str] = []
    inside = False
    for line in lines:
        if line.startswith(NATIVE_REPORT_START):
            inside = True
            native.append(line)
        elif inside and line.startswith(_NATIVE_REPORT_LINES):
            native.append(line)
        else:
            inside = False
            rest.append(line)
    return native, rest


def _point_at_test(item: pytest.Item, report: pytest.TestReport) -> None:
    """Make the report's crash location the test's own file and line, not the fork boundary's.

    ``--tb=line`` prints that location; ``--tb=short`` gets it as the first
    line of the message, as a failing assertion would show its line.
    """
    reprcrash = getattr(report.longrepr, "reprcrash", None)
    path, lineno = _test_location(item)
    if reprcrash is not None:
        reprcrash.path, reprcrash.lineno = path, lineno
    if item.config.getoption("tbstyle", "auto") != "short":
        return
    for entry in getattr(getattr(report.longrepr, "reprtraceback", None), "reprentries", ()):
        if hasattr(entry, "lines"):
            entry.lines[:0] = [f"{item.location[0]}:{lineno}: in {item.location[2]}"]


def _test_location(item: pytest.Item) -> tuple[str, int]:
    """The test's file (absolute, as pytest's own crash locations are) and its 1-based line."""
    path, lineno, _ = item.reportinfo()
    return os.fspath(path), (lineno or 0) + 1


def condense_frames(lines: list[str]) -> list[str]:
    """Shorten the stack dumps in a crashed child's stderr to the frames that matter.

    Python frames of pytest and pluggy go, and so does every frame from the fork
    boundary (isolation, forkserver, pytest_internals) down: they belong to the
    session loop. Of each remaining run of frames (faulthandler's or a native
    backtrace, both most recent first) the first ``FRAMES_KEPT`` stay.
    """
    out: list[str] = []
    run: list[str] = []
    below_boundary = False

    def end_run() -> None:
        out.extend(run[:FRAMES_KEPT])
        if len(run) > FRAMES_KEPT:
            out.append(f"  ... {len(run) - FRAMES_KEPT} more frames")
        run.clear()

    for line in lines:
        frame = _FRAME.match(line)
        if frame is None:
            end_run()
            below_boundary = False
            out.append(line)
            continue
        path = frame["path"]
        below_boundary = below_boundary or path in _BOUNDARY_FILES
        if not below_boundary and not any(part in path for part in _PYTEST_PATHS):
            run.append(line)
    end_run()
    return out
