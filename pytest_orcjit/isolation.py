"""The fork boundary, seen from the pytest process: run items in forked children.

``run_forked(item, nextitem, timeout, generation, warning_filters, warm)`` is called
by the plugin's ``pytest_runtest_protocol`` hook in place of pytest's own
protocol. The pytest process does not fork per test: the first forked test
starts a *fork server* (:mod:`pytest_orcjit.forkserver`, the far side of the
boundary), a process forked from pytest at that moment that from then on only
forks, and keeps children forked ahead, waiting for a job. For each test the
pytest process logs the start, writes the item's index to the jobs pipe, where
the next waiting child in line reads it, and reads what that child sends:
each report, serialized with ``pytest_report_to_serializable`` as soon as
it is logged (the phases' own, and extra ones such as those of pytest's
subtests), then its warnings.
It rebuilds the reports with ``pytest_report_from_serializable`` and logs
them, so the terminal, ``-x``/``--maxfail``, ``--lf``, junitxml and xdist see
what they would see without the fork.

Why a server: after a fork every page either process writes is copied (or at
least faulted) once. Forking the pytest process per test made it pay the fork
and those faults on every test; now the fork and the child's exit happen in the
server's processes, on another core while the pytest process reports, and the
pytest process pays its copy-on-write faults once per server. The server is a
snapshot: it is started again whenever the pytest process changed what a child
would inherit, that is when the plugin's ``generation`` changed (the JIT session
was made, objects compiled, a test ran in-process) or the fixtures the pytest
process holds set up changed.

The server reports each child's exit status through a pipe. A child that ends
before its last message fails the phase it was in (setup if it sent no report,
the call after a setup that passed, else the teardown) with a report made by
``pytest_runtest_makereport`` from a pytrace-less failure (so an ``xfail`` mark
applies), that names the cause: a signal ("crashed with signal SIGSEGV
(Segmentation fault)"), an early exit ("exited with status 3 before
reporting", e.g. C ``exit()``) or a timeout ("timeout after 2 s": SIGTERM, then
SIGKILL after a grace of one second). Its longrepr ends with the last lines the
child wrote to stderr, stack dumps trimmed to the frames that matter:
faulthandler's Python traceback (dumped on the crash, or on the SIGTERM of a
timeout) and any native backtrace. Where the stderr comes from: with
``--capture=fd`` (pytest's default) what the test wrote is still in pytest's
capture files and is read from there (stdout becomes a "Captured stdout"
section); otherwise (``-s``, ``--capture=sys``) the child's fd 2 is a pipe the
parent copies to its own stderr as it arrives and keeps the tail of. With
``--capture=sys`` what Python code wrote to ``sys.stderr`` lives in the
child's memory and dies with it.

What crosses the fork, and what does not:

* Reports cross whole: outcome, longrepr with its traceback, captured
  stdout/stderr/log sections, duration, ``user_properties`` (so
  ``record_property`` reaches junitxml). Warnings recorded in the child are
  replayed in the parent through ``pytest_warning_recorded``. ``pytest.exit()``
  and KeyboardInterrupt in the child end the session in the parent.
* Anything else the test changes in memory stays in the child: objects of
  session/module/class-scoped fixtures, module globals, ``item.stash``,
  ``config.stash``, ``record_xml_attribute``, ``record_testsuite_property``.
  Files (tmp_path, ``config.cache``) are shared as usual.

Fixtures of wider scope: the child sets up every fixture the parent does not
already hold, and tears down exactly what it set up (even a session-scoped
fixture) before it exits; it never runs the parent's finalizers. A
session-, module- or class-scoped fixture used only by forked tests is
therefore set up and torn down once per forked test; one that a non-forked test
already set up in the parent is shared (copy-on-write) by the forked tests that
follow and torn down once, in the parent, when the scope ends. The plugin's
own ``orcjit_session`` is always set up in the parent, before the first forked
test that uses it (``hold_session_fixture``). Limit: a
parametrized wider-scoped fixture that the parent holds with another parameter
is finished in the child as well as in the parent. The child's teardown sees
``nextitem=None`` in ``pytest_runtest_teardown``.

Fork safety: the parent must run no other thread when it starts the server (the
compile thread pool is joined before the first test; LLVM runs no threads in
our configuration; pytest's ``faulthandler_timeout`` starts a watchdog thread in
the parent, so use the orcjit timeout instead). The one exception is the I/O
thread every pytest-xdist worker runs: neither server nor child touches execnet.
CUDA must not be initialised in the parent: a forked child cannot use a CUDA
context it inherits.

This module imports neither the public API nor the native core.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import re
import select
import signal
import sys
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import pytest
from _pytest.skipping import evaluate_xfail_marks, xfailed_key

from . import forkserver
from .forkserver import HEADER, JOB, PID, STATUS, flush, kill, read_into, write_all

if TYPE_CHECKING:
    from _pytest.reports import TestReport

CRASH_MESSAGE = "crashed with signal {name} ({description})"
EXIT_MESSAGE = "exited with status {status} before reporting"
TIMEOUT_MESSAGE = "timeout after {timeout:g} s"
SERVER_MESSAGE = "the orcjit fork server exited unexpectedly (wait status {status})"
STDERR_TAIL_HEADER = "last {lines} lines of stderr:"
TAIL_LINES = 40
FRAMES_KEPT = 12  # of each stack dump in the stderr tail
TERMINATE_GRACE = 1.0  # seconds between SIGTERM and SIGKILL on a timeout

_ERR_KEEP = 64 * 1024  # bytes of the child's stderr kept for the tail
_FRAME = re.compile(r'\s+File "(?P<path>[^"]*)", line \d+,? in ')
_PYTEST_PATHS = (f"{os.sep}_pytest{os.sep}", f"{os.sep}pluggy{os.sep}", "<frozen runpy>")
_BOUNDARY_FILES = (__file__, forkserver.__file__)  # frames of the fork boundary
_SERVER = pytest.StashKey["ForkServer"]()
_POSITIONS = pytest.StashKey[dict[pytest.Item, int]]()


def run_forked(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    timeout: float | None,
    generation: int,
    warning_filters: list[Any],
    warm: Callable[[], object] | None = None,
) -> bool:
    """Run ``item``'s setup, call and teardown in a forked child; log its reports here.

    ``timeout`` is in seconds (``None``: wait forever). ``generation`` changes
    whenever the pytest process changed what a child inherits (the fork server
    is then started again); ``warning_filters`` are the filters outside any
    test, which the child starts from; ``warm``, if given, is what a new fork
    server calls before its first fork (it links the item's objects once, see
    :mod:`pytest_orcjit.forkserver`). Returns whether the child symbolized a
    C++ backtrace (see :mod:`pytest_orcjit.forkserver`). Never raises for what
    happens in the child, except that ``pytest.exit()`` and KeyboardInterrupt
    there end the session here too.
    """
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    run = _server_for(item, generation, warning_filters, warm).run(item, timeout)
    config = item.config
    reports = [
        (config.hook.pytest_report_from_serializable(config=config, data=data), extra)
        for data, extra in run.reports
    ]
    if run.end is None:
        phases = [report for report, extra in reports if not extra]
        reports += [(report, False) for report in _failure_reports(item, run, phases)]
    for report, extra in reports:
        if report.when == "teardown" and not extra:
            report = _teardown_parent(item, nextitem, report)
        ihook.pytest_runtest_logreport(report=report)
    end = run.end or {}
    if end.get("interrupted"):
        raise KeyboardInterrupt
    if end.get("exit"):
        msg, returncode = end["exit"]
        pytest.exit(msg, returncode)
    recorded: list[tuple[Any, ...]] = end.get("warnings", [])
    for warning, when, nodeid in recorded:
        ihook.pytest_warning_recorded.call_historic(
            kwargs={
                "warning_message": warnings.WarningMessage(*warning),
                "nodeid": nodeid,
                "when": when,
                "location": None,
            }
        )
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return bool(end.get("backtraced"))


def shutdown(config: pytest.Config) -> None:
    """Stop the run's fork server, if one runs (at the end of the session)."""
    server = config.stash.get(_SERVER, None)
    if server is not None:
        server.close()
        del config.stash[_SERVER]


def _server_for(
    item: pytest.Item,
    generation: int,
    warning_filters: list[Any],
    warm: Callable[[], object] | None,
) -> ForkServer:
    """The fork server for ``item``: the running one if it is still a faithful snapshot."""
    config = item.config
    server = config.stash.get(_SERVER, None)
    if server is not None and server.serves(item, generation):
        return server
    if server is not None:
        server.close()
    server = config.stash[_SERVER] = ForkServer(item, generation, warning_filters, warm)
    return server


def _positions(session: pytest.Session) -> dict[pytest.Item, int]:
    """Where each item is in ``session.items`` (a job names its item by index); made once.

    Each item's ``location`` is worked out then too: the pytest process needs
    it to log the item anyway, and a child forked before that would work it
    out again (0.2 ms of a trivial test, in ``reportinfo``); one that fails
    fails when the item is logged, as it would without the fork.
    """
    stash = session.config.stash
    if _POSITIONS not in stash or len(stash[_POSITIONS]) != len(session.items):
        stash[_POSITIONS] = {item: index for index, item in enumerate(session.items)}
        for item in session.items:
            with contextlib.suppress(Exception):
                item.location  # noqa: B018 (a cached property)
    return stash[_POSITIONS]


class ForkServer:
    """The pytest process's handle on its fork server (see the module docstring).

    Pipes: jobs (parent -> waiting child), done (child -> parent: a byte once
    its last message is written), stderr (child -> parent, when not captured
    by pytest), status (server -> parent: how each child ended) and a lifeline
    (the server leaves when it closes). The running child writes its pid and
    its messages into a memory file shared by all, emptied before each job,
    rather than into a pipe: a message there survives a crash as it would in a
    pipe, but wakes nobody (a woken pytest process took the running child's
    CPU, once per report) and never fills up. The pytest process wakes once
    per test: on done, on the server's status of the child, or on the timeout.
    """

    def __init__(
        self,
        item: pytest.Item,
        generation: int,
        warning_filters: list[Any],
        warm: Callable[[], object] | None = None,
    ) -> None:
        config, session = item.config, item.session
        self.generation = generation
        self.stack = _parent_stack(session)
        self.start_item = item
        self.positions = _positions(session)
        # With --capture=fd pytest's own capture owns fd 2 while the test runs;
        # otherwise the child's fd 2 goes through us so its tail can be reported.
        self.tee = config.getoption("capture", "no") != "fd"
        self.messages = os.memfd_create("orcjit-messages")  # shared: in neither tuple below
        jobs_r, self.jobs_w = os.pipe()
        self.done_r, done_w = os.pipe()
        self.stderr_r, stderr_w = os.pipe()
        self.status_r, status_w = os.pipe()
        lifeline_r, self.lifeline_w = os.pipe()
        theirs = (jobs_r, done_w, stderr_w, status_w, lifeline_r)
        ours = (self.jobs_w, self.done_r, self.stderr_r, self.status_r, self.lifeline_w)
        ends = forkserver.Ends(jobs_r, self.messages, done_w, stderr_w, status_w, lifeline_r)
        flush(config)
        gc.freeze()  # the server's children then leave the parent's objects (and pages) alone
        try:
            pid = _fork(config)
        except BaseException:
            gc.unfreeze()
            for fd in (*theirs, *ours, self.messages):
                os.close(fd)
            raise
        if pid == 0:
            for fd in ours:
                os.close(fd)
            forkserver.serve(item, ends, self.tee, warning_filters, warm)
        gc.unfreeze()
        for fd in theirs:
            os.close(fd)
        self.pid = pid
        self.exit_status: int | None = None  # the server's own, once it is gone
        for fd in (self.done_r, self.stderr_r, self.status_r):
            os.set_blocking(fd, False)
        self.ended: dict[int, int] = {}  # pid -> wait status, of children not yet matched

    def serves(self, item: pytest.Item, generation: int) -> bool:
        """Whether a child of this server would inherit what a fork of the parent now would."""
        return (
            self.exit_status is None
            and generation == self.generation
            and _parent_stack(item.session) == self.stack
            and (item is self.start_item or item in self.positions)
        )

    def run(self, item: pytest.Item, timeout: float | None) -> _Run:
        """Hand ``item`` to the next waiting child and wait until it reported back or ended."""
        index = -1 if item is self.start_item else self.positions[item]
        run = _Run(timeout, tee=self.tee)
        while run.read_stderr(self.stderr_r) > 0:  # late output of the last child
            pass
        run.stderr.clear()
        self.ended.clear()
        os.ftruncate(self.messages, 0)
        os.lseek(self.messages, 0, os.SEEK_SET)  # the children write at this shared offset
        start = time.monotonic()
        write_all(self.jobs_w, JOB.pack(index, timeout or 0.0))
        try:
            self._wait(run)
        finally:
            if run.end is None and run.status is None and run.pid is not None:
                kill(run.pid, signal.SIGKILL)  # KeyboardInterrupt or an error here
        run.duration = time.monotonic() - start
        return run

    def _wait(self, run: _Run) -> None:
        """Wait until the child reported or ended; on the deadline terminate, then kill.

        Reading stderr while waiting matters: a child writing much of it (with
        ``-s``) would otherwise block on a full pipe forever. Its messages are
        read from the messages file at each wake-up.
        """
        poller = select.poll()
        for fd in (self.done_r, self.stderr_r, self.status_r):
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + run.timeout if run.timeout else None
        kill_signal = signal.SIGTERM
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = {fd for fd, _ in poller.poll(None if wait is None else wait * 1000)}
            if self.stderr_r in ready:
                run.read_stderr(self.stderr_r)
            if self.done_r in ready:
                while read_into(self.done_r, bytearray()) > 0:
                    pass
            if self.status_r in ready:
                self._read_statuses()
            # After the statuses: a child that ended wrote all its messages before the server
            # could say so, and they are read here before its end is looked at.
            while chunk := os.pread(self.messages, 1 << 20, len(run.messages)):
                run.messages += chunk
            if run.parse():
                return
            if run.pid is not None and run.pid in self.ended:
                run.status = self.ended.pop(run.pid)  # what it sent in full is parsed
                return
            if self.exit_status is not None:  # its status would never come: stop it too
                run.server_status = self.exit_status
                if run.pid is not None:
                    kill(run.pid, signal.SIGKILL)
                return
            if deadline is not None and time.monotonic() >= deadline:
                run.timed_out = True
                if run.pid is None:  # the server never handed the job out: it is stuck
                    kill(self.pid, signal.SIGKILL)
                    deadline = None
                    continue
                kill(run.pid, kill_signal)
                if kill_signal == signal.SIGTERM:
                    deadline = time.monotonic() + TERMINATE_GRACE
                    kill_signal = signal.SIGKILL
                else:
                    deadline = None

    def _read_statuses(self) -> None:
        data = bytearray()
        while (got := read_into(self.status_r, data)) > 0:
            pass
        for offset in range(0, len(data) - len(data) % STATUS.size, STATUS.size):
            pid, status = STATUS.unpack_from(data, offset)
            self.ended[pid] = status
        if got == 0:  # end of file: the server is gone
            self.exit_status = os.waitpid(self.pid, 0)[1]

    def close(self) -> None:
        """Stop the server (it kills its waiting child) and reap it."""
        for fd in (self.lifeline_w, self.jobs_w, self.done_r, self.stderr_r, self.status_r):
            os.close(fd)
        os.close(self.messages)
        if self.exit_status is None:
            self.exit_status = os.waitpid(self.pid, 0)[1]


class _Run:
    """One test in a child, seen from the parent: what the child sent and how it ended."""

    def __init__(self, timeout: float | None, tee: bool) -> None:
        self.timeout = timeout
        self.tee = tee
        self.messages = bytearray()  # what the child wrote into the server's messages file
        self.stderr = bytearray()
        self.pid: int | None = None
        self.status: int | None = None  # wait status, if it ended without reporting
        self.server_status: int | None = None  # wait status of the server, if it died
        self.timed_out = False
        self.duration = 0.0
        # Serialized, each sent once it was logged, and whether it was an extra one (a subtest).
        self.reports: list[tuple[dict[str, Any], bool]] = []
        self.end: dict[str, Any] | None = None  # the last message; None: the child ended early
        self._parsed = 0  # bytes of ``messages`` taken so far

    def parse(self) -> bool:
        """Take the child's pid and whole messages out of ``messages``; True after the last one."""
        data = self.messages
        if self.pid is None and len(data) >= PID.size:
            self.pid = PID.unpack_from(data)[0]
            self._parsed = PID.size
        while self.pid is not None and len(data) - self._parsed >= HEADER.size:
            start = self._parsed + HEADER.size
            stop = start + HEADER.unpack_from(data, self._parsed)[0]
            if len(data) < stop:
                break
            message = pickle.loads(memoryview(data)[start:stop])
            self._parsed = stop
            if "report" in message:
                self.reports.append((message["report"], message["extra"]))
            else:
                self.end = message
        return self.end is not None

    def describe(self) -> str:
        """Why the child did not report back, in one line."""
        if self.timed_out:
            return TIMEOUT_MESSAGE.format(timeout=self.timeout)
        if self.status is None:
            return SERVER_MESSAGE.format(status=self.server_status)
        if os.WIFSIGNALED(self.status):
            signum = os.WTERMSIG(self.status)
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = str(signum)
            return CRASH_MESSAGE.format(name=name, description=signal.strsignal(signum))
        return EXIT_MESSAGE.format(status=os.waitstatus_to_exitcode(self.status))

    def read_stderr(self, fd: int) -> int:
        """Read the child's stderr (copied to ours when not captured); keep its tail."""
        start = len(self.stderr)
        got = read_into(fd, self.stderr)
        if self.tee and got > 0:
            write_all(2, self.stderr[start:])
        del self.stderr[:-_ERR_KEEP]
        return got

    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def _parent_stack(session: pytest.Session) -> tuple[Any, ...]:
    """The nodes the pytest process holds set up (their fixtures are what children share)."""
    return tuple(session._setupstate.stack)


def hold_session_fixture(item: pytest.Item, name: str) -> None:
    """Set up the session-scoped fixture ``name`` of ``item`` here, in the pytest process.

    The session node joins the parent's set-up stack as ``SetupState.setup``
    would put it there (it is the first node of every item's chain), and the
    fixture's finalizer goes onto it: children then find the fixture set up,
    as after an in-process test that used it, and it is torn down once, here,
    when the session ends.
    """
    session = item.session
    stack = session._setupstate.stack
    fixturedef = item._fixtureinfo.name2fixturedefs[name][-1]  # type: ignore[attr-defined]
    if session in stack and fixturedef.cached_result is not None:
        return  # held since an earlier test
    if session not in stack:
        stack[session] = ([session.teardown], None)
        session.setup()
    # pytest 9.1 deprecates a request setting up fixtures while its node is not set up (not on the
    # stack): the item stands there, with no finalizers, for as long as the request runs.
    stack[item] = ([], None)
    try:
        with _captured(item, "setup"):
            item._request.getfixturevalue(name)  # type: ignore[attr-defined]
    finally:
        del stack[item]


def _teardown_parent(
    item: pytest.Item, nextitem: pytest.Item | None, report: TestReport
) -> TestReport:
    """Tear down the parent's nodes ``nextitem`` does not need; merge errors into ``report``."""
    session = item.session
    state = session._setupstate
    if not state.stack:
        return report
    if session.shouldfail or session.shouldstop:
        nextitem = None
    needed = nextitem.listchain() if nextitem is not None else []
    if all(node in needed for node in state.stack):
        return report  # nextitem needs every node held here: nothing to tear down
    sections = item._report_sections
    start = len(sections)
    with _captured(item, "teardown"):
        call = pytest.CallInfo.from_call(lambda: state.teardown_exact(nextitem), when="teardown")
    report.sections += [(f"Captured {key} {when}", text) for when, key, text in sections[start:]]
    del sections[start:]
    if call.excinfo is None:
        return report
    parent_report: TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    if report.passed:
        parent_report.sections = list(report.sections)
        return parent_report
    report.sections.append(("teardown in the pytest process", str(parent_report.longrepr)))
    return report


def _captured(item: pytest.Item, when: str) -> contextlib.AbstractContextManager[None]:
    """pytest's output capture around a phase, for what the pytest process runs of ``item``.

    What is written goes into ``item``'s report sections, as in pytest's own
    phases, and global capture is left suspended after it, as pytest leaves it
    between phases (even if a hook resumed it, as ``--setup-show`` does).
    """
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        return contextlib.nullcontext()
    return capman.item_capture(when, item)


def _failure_reports(item: pytest.Item, child: _Run, done: list[TestReport]) -> list[TestReport]:
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
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is not None and capman.is_globally_capturing():
        # With --capture=fd the dead child's output is still in pytest's capture files.
        out, stderr = capman.read_global_capture()
        if out:
            sections.append((f"Captured stdout {when}", out))
    lines = _condense_frames((stderr + child.stderr_text()).splitlines())
    tail = lines[-TAIL_LINES:]
    if len(tail) < len(lines) and stderr:
        sections.append((f"Captured stderr {when}", stderr))
    longrepr = child.describe()
    if tail:
        header = STDERR_TAIL_HEADER.format(lines=len(tail))
        longrepr = "\n".join([longrepr, "", header, *tail])
    # Made by pytest's own hook from a pytrace-less failure: the message is the
    # whole longrepr and shows in the short summary on pytest 8 and 9 alike. An
    # xfail mark (evaluated in the child, which is gone) makes it xfailed, as it
    # would any other failure of the test.
    with contextlib.suppress(Exception):  # a bad condition already failed the child's setup
        item.stash[xfailed_key] = evaluate_xfail_marks(item)
    call = pytest.CallInfo.from_call(lambda: pytest.fail(longrepr, pytrace=False), when)
    crash: TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
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


def _condense_frames(lines: list[str]) -> list[str]:
    """Shorten the stack dumps in a crashed child's stderr to the frames that matter.

    Python frames of pytest and pluggy go, and so does every frame from the fork
    boundary (this module and forkserver) down: they belong to the parent's
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


def _fork(config: pytest.Config) -> int:
    """``os.fork()``; under pytest-xdist without Python 3.12's warning about threads.

    An xdist worker always runs execnet's I/O thread; the child never uses
    execnet, so that one thread is safe to leave behind.
    """
    if sys.version_info < (3, 12) or not hasattr(config, "workerinput"):
        return os.fork()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*multi-threaded.*fork", DeprecationWarning)
        return os.fork()
