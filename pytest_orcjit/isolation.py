"""The fork boundary: run one pytest item in a forked child and report back.

``run_forked(item, nextitem, timeout)`` is called by the plugin's
``pytest_runtest_protocol`` hook in place of pytest's own protocol. The parent
logs the start of the test, forks, and waits. The child runs pytest's normal
``runtestprotocol`` (setup, call, teardown, with capture, logging and
fixtures), turns each report into a dict with ``pytest_report_to_serializable``,
sends the pickled list through a pipe and leaves with ``os._exit`` (no atexit
handlers, no finalizers of the parent's objects). The parent rebuilds the
reports with ``pytest_report_from_serializable`` and logs them, so the terminal,
``-x``/``--maxfail``, ``--lf``, junitxml and xdist see what they would see
without the fork.

The parent reads both pipes while it waits (a large report never blocks the
child) and goes on as soon as the whole message has arrived; the exiting child
is reaped before the next fork, so one child at most outlives its test, and only
by its exit.

A child that does not report back becomes one failed call report, made by
``pytest_runtest_makereport`` from a pytrace-less failure, that names the
cause: a signal ("crashed with signal SIGSEGV (Segmentation fault)"), an early
exit ("exited with status 3 before reporting", e.g. C ``exit()``) or a timeout
("timeout after 2 s": SIGTERM, then SIGKILL after a grace of one second). Its
longrepr ends with the last lines the child wrote to stderr, stack dumps
trimmed to the frames that matter: faulthandler's Python traceback (dumped on
the crash, or on the SIGTERM of a timeout) and any native backtrace. Where the
stderr comes from: with ``--capture=fd`` (pytest's default) what the test
wrote is still in pytest's capture files and is read from there (stdout
becomes a "Captured stdout call" section); otherwise (``-s``,
``--capture=sys``) the child's fd 2 is a pipe the parent copies to its own
stderr as it arrives and keeps the tail of. With ``--capture=sys`` what Python
code wrote to ``sys.stderr`` lives in the child's memory and dies with it.

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
follow and torn down once, in the parent, when the scope ends. Limit: a
parametrized wider-scoped fixture that the parent holds with another parameter
is finished in the child as well as in the parent. The child's teardown sees
``nextitem=None`` in ``pytest_runtest_teardown``.

Fork safety: the parent must run no other thread when it forks (the compile
thread pool is joined before the first test; LLVM runs no threads in our
configuration; pytest's ``faulthandler_timeout`` starts a watchdog thread in
the parent, so use the orcjit timeout instead). The one exception is the I/O
thread every pytest-xdist worker runs: the child never touches execnet. CUDA
must not be initialised in the parent: a forked child cannot use a CUDA
context it inherits.

This module imports neither the public API nor the native core.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import os
import pickle
import re
import select
import signal
import struct
import sys
import time
import traceback
import warnings
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from _pytest.runner import runtestprotocol

if TYPE_CHECKING:
    from _pytest.reports import TestReport

CRASH_MESSAGE = "crashed with signal {name} ({description})"
EXIT_MESSAGE = "exited with status {status} before reporting"
TIMEOUT_MESSAGE = "timeout after {timeout:g} s"
STDERR_TAIL_HEADER = "last {lines} lines of stderr:"
TAIL_LINES = 40
FRAMES_KEPT = 12  # of each stack dump in the stderr tail
TERMINATE_GRACE = 1.0  # seconds between SIGTERM and SIGKILL on a timeout

_HEADER = struct.Struct("<Q")  # length prefix of the child's one message
_ERR_KEEP = 64 * 1024  # bytes of the child's stderr kept for the tail
_FRAME = re.compile(r'\s+File "(?P<path>[^"]*)", line \d+,? in ')
_PYTEST_PATHS = (f"{os.sep}_pytest{os.sep}", f"{os.sep}pluggy{os.sep}", "<frozen runpy>")
_THIS_FILE = __file__
_INTERNAL_ERROR = 70  # child exit status when the fork boundary itself failed
_EXITING: list[int] = []  # children that reported back and were not reaped yet


def run_forked(item: pytest.Item, nextitem: pytest.Item | None, timeout: float | None) -> None:
    """Run ``item``'s setup, call and teardown in a forked child; log its reports here.

    ``timeout`` is in seconds (``None``: wait forever). Never raises for what
    happens in the child, except that ``pytest.exit()`` and KeyboardInterrupt
    there end the session here too.
    """
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    result = _Child.run(item, timeout)
    if result.message is None:
        reports = _failure_reports(item, result)
        recorded: list[tuple[Any, ...]] = []
    else:
        if result.message.get("interrupted"):
            raise KeyboardInterrupt
        if result.message.get("exit"):
            msg, returncode = result.message["exit"]
            pytest.exit(msg, returncode)
        config = item.config
        reports = [
            config.hook.pytest_report_from_serializable(config=config, data=data)
            for data in result.message["reports"]
        ]
        recorded = result.message["warnings"]
    for report in reports:
        if report.when == "teardown":
            report = _teardown_parent(item, nextitem, report)
        ihook.pytest_runtest_logreport(report=report)
    for warning in recorded:
        ihook.pytest_warning_recorded.call_historic(
            kwargs={
                "warning_message": warnings.WarningMessage(*warning),
                "nodeid": item.nodeid,
                "when": "runtest",
                "location": None,
            }
        )
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


class _Child:
    """One forked child, seen from the parent: its pipes, its exit and what it sent."""

    def __init__(
        self, pid: int, reports_fd: int, stderr_fd: int, tee: bool, timeout: float | None
    ) -> None:
        self.pid = pid
        self.timeout = timeout
        self.fds = {reports_fd: bytearray(), stderr_fd: bytearray()}
        self.reports_fd, self.stderr_fd, self.tee = reports_fd, stderr_fd, tee
        self.status: int | None = None  # wait status once reaped
        self.timed_out = False
        self.duration = 0.0
        self.message: dict[str, Any] | None = None  # None: the child did not report back

    @classmethod
    def run(cls, item: pytest.Item, timeout: float | None) -> _Child:
        """Fork, run the item in the child, and wait for it in the parent."""
        capture = item.config.getoption("capture", "no")
        # With --capture=fd pytest's own capture owns fd 2 while the test runs;
        # otherwise the child's fd 2 goes through us so its tail can be reported.
        redirect = capture != "fd"
        _flush(item.config)
        while _EXITING:  # the previous child is gone before this one starts
            os.waitpid(_EXITING.pop(), 0)
        reports_r, reports_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        start = time.monotonic()
        gc.freeze()  # the child's collections then leave the parent's objects (and pages) alone
        try:
            pid = _fork(item.config)
        except BaseException:
            gc.unfreeze()
            for fd in (reports_r, reports_w, stderr_r, stderr_w):
                os.close(fd)
            raise
        if pid == 0:
            os.close(reports_r)
            os.close(stderr_r)
            _child_main(item, reports_w, stderr_w, redirect, bool(timeout))
        gc.unfreeze()
        os.close(reports_w)
        os.close(stderr_w)
        child = cls(pid, reports_r, stderr_r, tee=redirect, timeout=timeout)
        try:
            child._wait()
        finally:
            child._close()
        child.duration = time.monotonic() - start
        child._parse()
        return child

    def _wait(self) -> None:
        """Read both pipes until the child exits; on the deadline terminate, then kill it.

        Reading while waiting matters: a child writing a large report would
        otherwise block on a full pipe forever.
        """
        poller = select.poll()
        for fd in self.fds:
            os.set_blocking(fd, False)
            poller.register(fd, select.POLLIN)
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: poll waitpid instead
            pidfd = -1
        else:
            poller.register(pidfd, select.POLLIN)
        timeout = self.timeout
        deadline = time.monotonic() + timeout if timeout else None
        kill_signal = signal.SIGTERM
        try:
            while self.status is None and not self._reported():
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                if pidfd < 0:
                    wait = 0.01 if wait is None else min(wait, 0.01)
                exited = pidfd < 0
                for fd, _ in poller.poll(None if wait is None else wait * 1000):
                    if fd == pidfd:
                        exited = True
                    elif self._read(fd) == 0:
                        poller.unregister(fd)
                if exited:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                    if pid:
                        self.status = status
                if self.status is None and deadline is not None and time.monotonic() >= deadline:
                    self.timed_out = True
                    os.kill(self.pid, kill_signal)
                    if kill_signal == signal.SIGTERM:
                        deadline = time.monotonic() + TERMINATE_GRACE
                        kill_signal = signal.SIGKILL
                    else:
                        deadline = None
            for fd in self.fds:  # what the child wrote just before it reported or exited
                while self._read(fd) > 0:
                    pass
            if self.status is None:  # it reported and is exiting: reap it before the next fork
                _EXITING.append(self.pid)
        finally:
            if self.status is None and not self._reported():  # KeyboardInterrupt or error here
                os.kill(self.pid, signal.SIGKILL)
                self.status = os.waitpid(self.pid, 0)[1]
            if pidfd >= 0:
                os.close(pidfd)

    def _reported(self) -> bool:
        data = self.fds[self.reports_fd]
        size = _HEADER.size
        return len(data) >= size and len(data) == size + _HEADER.unpack_from(data)[0]

    def _read(self, fd: int) -> int:
        """Read what is there: bytes read, 0 at end of file, -1 if none for now."""
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:  # a grandchild may still hold the pipe open
            return -1
        buffer = self.fds[fd]
        buffer += chunk
        if fd == self.stderr_fd:
            if self.tee:
                _write_all(2, chunk)
            del buffer[:-_ERR_KEEP]
        return len(chunk)

    def _close(self) -> None:
        for fd in self.fds:
            os.close(fd)

    def _parse(self) -> None:
        if self._reported():
            self.message = pickle.loads(memoryview(self.fds[self.reports_fd])[_HEADER.size :])

    def describe(self) -> str:
        """Why the child did not report back, in one line."""
        if self.timed_out:
            return TIMEOUT_MESSAGE.format(timeout=self.timeout)
        assert self.status is not None
        if os.WIFSIGNALED(self.status):
            signum = os.WTERMSIG(self.status)
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = str(signum)
            return CRASH_MESSAGE.format(name=name, description=signal.strsignal(signum))
        return EXIT_MESSAGE.format(status=os.waitstatus_to_exitcode(self.status))

    def stderr_text(self) -> str:
        return self.fds[self.stderr_fd].decode("utf-8", "replace")


def _child_main(
    item: pytest.Item, reports_fd: int, stderr_fd: int, redirect: bool, dump_on_term: bool
) -> NoReturn:
    """The child: run the protocol, send one message, leave. Never returns."""
    status = _INTERNAL_ERROR
    try:
        if redirect:
            os.dup2(stderr_fd, 2)
        if faulthandler.is_enabled():
            faulthandler.enable(file=stderr_fd, all_threads=True)
        if dump_on_term:  # a timeout's SIGTERM shows where the test hangs, then kills
            faulthandler.register(signal.SIGTERM, file=stderr_fd, all_threads=True, chain=True)
        _borrow_parent_nodes(item.session)
        message: dict[str, Any] = {"reports": [], "warnings": []}
        reports: list[TestReport] = []
        with warnings.catch_warnings(record=True) as log:
            try:
                # nextitem=None: tear down all this child set up; parent nodes are borrowed.
                reports = runtestprotocol(item, log=False, nextitem=None)
            except pytest.exit.Exception as exc:
                message["exit"] = (exc.msg, exc.returncode)
            except KeyboardInterrupt:
                message["interrupted"] = True
        config = item.config
        message["reports"] = [
            config.hook.pytest_report_to_serializable(config=config, report=report)
            for report in reports
        ]
        message["warnings"] = [_warning_to_tuple(w) for w in log]
        payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        _flush(config)  # all output before the report: the parent goes on once it has it
        _write_all(reports_fd, _HEADER.pack(len(payload)) + payload)
        status = 0
    except BaseException:
        with contextlib.suppress(BaseException):
            _write_all(stderr_fd, traceback.format_exc().encode())
    finally:
        try:
            _flush(item.config)
        finally:
            os._exit(status)


def _borrow_parent_nodes(session: pytest.Session) -> None:
    """Make the child's teardown run only the finalizers the child itself adds.

    The parent's set-up stack is always a prefix of this item's chain. The child
    keeps those nodes (and the fixtures cached on them) but with empty finalizer
    lists, so tearing everything down at the end runs exactly what the child
    set up, never the parent's finalizers.
    """
    stack = session._setupstate.stack
    for node, (_, exc) in list(stack.items()):
        stack[node] = ([], exc)


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
    call = pytest.CallInfo.from_call(lambda: state.teardown_exact(nextitem), when="teardown")
    if call.excinfo is None:
        return report
    parent_report: TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    if report.passed:
        parent_report.sections = list(report.sections)
        return parent_report
    report.sections.append(("teardown in the pytest process", str(parent_report.longrepr)))
    return report


def _failure_reports(item: pytest.Item, child: _Child) -> list[TestReport]:
    """The reports of a child that died, timed out or exited without reporting back."""
    sections: list[tuple[str, str]] = []
    stderr = ""
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is not None and capman.is_globally_capturing():
        # With --capture=fd the dead child's output is still in pytest's capture files.
        out, stderr = capman.read_global_capture()
        if out:
            sections.append(("Captured stdout call", out))
    lines = _condense_frames((stderr + child.stderr_text()).splitlines())
    tail = lines[-TAIL_LINES:]
    if len(tail) < len(lines) and stderr:
        sections.append(("Captured stderr call", stderr))
    longrepr = child.describe()
    if tail:
        header = STDERR_TAIL_HEADER.format(lines=len(tail))
        longrepr = "\n".join([longrepr, "", header, *tail])
    # Made by pytest's own hook from a pytrace-less failure: the message is the
    # whole longrepr and shows in the short summary on pytest 8 and 9 alike.
    call = pytest.CallInfo.from_call(lambda: pytest.fail(longrepr, pytrace=False), "call")
    crash: TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    stop = time.time()
    crash.sections.extend(sections)
    crash.duration, crash.start, crash.stop = child.duration, stop - child.duration, stop
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

    Python frames of pytest and pluggy go, and so does every frame from this
    module down (they belong to the parent's session loop); of each remaining
    run of frames (faulthandler's or a native backtrace, both most recent
    first) the first ``FRAMES_KEPT`` stay.
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
        below_boundary = below_boundary or path == _THIS_FILE
        if not below_boundary and not any(part in path for part in _PYTEST_PATHS):
            run.append(line)
    end_run()
    return out


def _warning_to_tuple(warning: warnings.WarningMessage) -> tuple[Any, ...]:
    """The ``WarningMessage`` arguments, made picklable (a message that is not becomes text)."""
    message: Any = warning.message
    category = warning.category
    try:
        pickle.dumps((message, category))
    except Exception:
        message = str(message)
        try:
            pickle.dumps(category)
        except Exception:
            category = UserWarning
    return (message, category, warning.filename, warning.lineno, None, warning.line)


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


def _flush(config: pytest.Config) -> None:
    """Flush what Python buffered so that parent and child never both write it."""
    terminal = config.pluginmanager.getplugin("terminalreporter")
    streams = [sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__]
    if terminal is not None:
        streams.append(terminal._tw)
    for stream in streams:
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])
