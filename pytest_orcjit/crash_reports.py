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
import time
from typing import TYPE_CHECKING, Literal

import pytest

from . import pytest_internals

if TYPE_CHECKING:
    from .isolation import ChildRun

CRASH_MESSAGE = "crashed with signal {name} ({description})"
EXIT_MESSAGE = "exited with status {status} before reporting"
TIMEOUT_MESSAGE = "timeout after {timeout:g} s"
SERVER_MESSAGE = "the orcjit fork server exited unexpectedly (wait status {status})"
STDERR_TAIL_HEADER = "last {lines} lines of stderr:"
TAIL_LINES = 40
FRAMES_KEPT = 12  # of each stack dump in the stderr tail

_FRAME = re.compile(r'\s+File "(?P<path>[^"]*)", line \d+,? in ')
_PYTEST_PATHS = (f"{os.sep}_pytest{os.sep}", f"{os.sep}pluggy{os.sep}", "<frozen runpy>")
_BOUNDARY_FILES = tuple(  # frames of the fork boundary, and all below them, are the session loop's
    os.path.join(os.path.dirname(__file__), name)
    for name in ("isolation.py", "forkserver.py", "pytest_internals.py")
)


def describe(child: ChildRun) -> str:
    """Why the child did not report back, in one line."""
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
    lines = condense_frames((stderr + child.stderr_text()).splitlines())
    tail = lines[-TAIL_LINES:]
    if len(tail) < len(lines) and stderr:
        sections.append((f"Captured stderr {when}", stderr))
    longrepr = describe(child)
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
