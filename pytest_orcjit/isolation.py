"""The fork boundary, seen from the pytest process: run items in forked children.

``run_forked`` is called by the plugin's ``pytest_runtest_protocol`` hook in
place of pytest's own protocol. The first forked test starts a fork server
(:mod:`pytest_orcjit.forkserver`, the far side), a snapshot of the pytest
process that keeps children forked ahead; each test is a job written to one of
them (:mod:`pytest_orcjit.protocol`). The reports the child sends are rebuilt
with ``pytest_report_from_serializable`` and logged here, so that the terminal,
``-x``, ``--lf``, junitxml and xdist see what they would without the fork; a
child that does not report back fails its test (:mod:`pytest_orcjit.crash_reports`).
The server is started again whenever the pytest process changed what a child
would inherit (the plugin's ``generation``, or the nodes it holds set up).
``docs/architecture.md`` describes what crosses the fork and why it is built so.

Fork safety: the pytest process runs no other thread when it starts the server
(pytest-xdist's I/O thread aside, which neither server nor child touches), and
never initialises CUDA. This module imports neither the public API nor the
native core.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import sys
import time
import warnings
from collections.abc import Callable, Hashable
from typing import Any

import pytest

from . import crash_reports, forkserver, pytest_internals
from .protocol import JOB, STATUS, Ends, MessageReader, kill, read_into, write_all

TERMINATE_GRACE = 1.0  # seconds between SIGTERM and SIGKILL on a timeout
INTERRUPT_GRACE = 3.0  # seconds a child interrupted by Ctrl-C has to show where it was

_ERR_KEEP = 64 * 1024  # bytes of the child's stderr kept for the tail
SERVERS = 4
"""Fork servers kept at once, one per prepared library (and one for tests without): tests whose
sets of objects alternate each find their server running; a fifth set stops the one used least
recently."""
_SERVERS = pytest.StashKey["dict[Hashable, ForkServer]"]()
_UNPREPARED = pytest.StashKey["set[Hashable]"]()
_POSITIONS = pytest.StashKey[dict[pytest.Item, int]]()


def run_forked(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    timeout: float | None,
    generation: int,
    warning_filters: list[Any],
    warm: Callable[[], object] | None = None,
    key: Hashable = None,
    fallback: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Run ``item``'s setup, call and teardown in a forked child; log its reports here.

    ``timeout`` is in seconds (``None``: wait forever). ``generation`` changes
    whenever the pytest process changed what a child inherits (the fork server
    is then started again); ``warning_filters`` are the filters outside any
    test, which the child starts from; ``warm``, if given, is what a new fork
    server calls before its first fork (it links the item's objects once, see
    :mod:`pytest_orcjit.forkserver`); ``key`` names what ``warm`` prepares
    (the item's library), and items of one key share a server; ``fallback``
    replaces ``warm``, without a key, once preparing it killed a server. Returns
    the child's last message (``protocol``: whether it symbolized a C++
    backtrace, which modules it imported; empty if it ended early). Never raises for what
    happens in the child, except that ``pytest.exit()`` and KeyboardInterrupt
    there end the session here too; so does Ctrl-C here, once the child showed
    where it was and its test failed with that.
    """
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    unprepared = item.config.stash.setdefault(_UNPREPARED, set())
    if key in unprepared:
        warm, key = fallback, None
    run = _server_for(item, generation, warning_filters, warm, key).run(item, timeout)
    if run.pid is None and run.server_status is not None and key is not None:
        # The server died before it handed the job out: preparing its library killed it (a
        # static constructor that exits or aborts). Tests of that set link their own from now on.
        unprepared.add(key)
        run = _server_for(item, generation, warning_filters, fallback, None).run(item, timeout)
    config = item.config
    reports = [
        (config.hook.pytest_report_from_serializable(config=config, data=data), extra)
        for data, extra in run.reports
    ]
    if run.end is None:
        phases = [report for report, extra in reports if not extra]
        failed = crash_reports.failure_reports(item, run, phases)
        reports += [(report, False) for report in failed]
    for report, extra in reports:
        if report.when == "teardown" and not extra:
            report = _teardown_parent(item, nextitem, report)
        ihook.pytest_runtest_logreport(report=report)
    end = run.end or {}
    if run.interrupted:  # Ctrl-C here while the child ran: its report says where it was
        raise KeyboardInterrupt(f"while running {item.nodeid}")
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
    return end


def shutdown(config: pytest.Config) -> None:
    """Stop the run's fork servers, if any run (at the end of the session)."""
    for server in config.stash.get(_SERVERS, {}).values():
        server.close()
    config.stash[_SERVERS] = {}


def _server_for(
    item: pytest.Item,
    generation: int,
    warning_filters: list[Any],
    warm: Callable[[], object] | None,
    key: Hashable,
) -> ForkServer:
    """The fork server of ``key`` for ``item``: the running one if it is still a faithful snapshot.

    A server that is not (the pytest process changed what a child inherits)
    is stopped, and so are all the others, which are older. Servers are kept
    in the order they were last used; one too many stops the oldest.
    """
    servers = item.config.stash.setdefault(_SERVERS, {})
    server = servers.pop(key, None)
    if server is not None and server.serves(item, generation):
        servers[key] = server  # the most recently used, last
        return server
    if server is not None:
        server.close()
    for other in [other for other in servers.values() if not other.serves(item, generation)]:
        del servers[other.key]
        other.close()
    while len(servers) >= SERVERS:
        servers.pop(next(iter(servers))).close()
    server = servers[key] = ForkServer(item, generation, warning_filters, warm, key)
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
    """The pytest process's handle on its fork server; its channels are :mod:`.protocol`'s.

    The running child writes its messages into a memory file rather than a
    pipe: a message there survives a crash, but wakes nobody and never fills
    up. The pytest process wakes once per test: on done, on the server's
    status of the child, or on the timeout.
    """

    def __init__(
        self,
        item: pytest.Item,
        generation: int,
        warning_filters: list[Any],
        warm: Callable[[], object] | None = None,
        key: Hashable = None,
    ) -> None:
        config, session = item.config, item.session
        self.key = key
        self.generation = generation
        self.stack = pytest_internals.parent_stack(session)
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
        ends = Ends(jobs_r, self.messages, done_w, stderr_w, status_w, lifeline_r)
        pytest_internals.flush(config)
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
            for other in config.stash.get(_SERVERS, {}).values():
                other.forget()  # their ends held here would keep them from ever closing
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
            and pytest_internals.parent_stack(item.session) == self.stack
            and (item is self.start_item or item in self.positions)
        )

    def run(self, item: pytest.Item, timeout: float | None) -> ChildRun:
        """Hand ``item`` to the next waiting child and wait until it reported back or ended."""
        index = -1 if item is self.start_item else self.positions[item]
        run = ChildRun(timeout, tee=self.tee)
        while run.read_stderr(self.stderr_r) > 0:  # late output of the last child
            pass
        run.stderr.clear()
        self.ended.clear()
        os.ftruncate(self.messages, 0)
        os.lseek(self.messages, 0, os.SEEK_SET)  # the children write at this shared offset
        start = time.monotonic()
        write_all(self.jobs_w, JOB.pack(index, timeout or 0.0))
        try:
            try:
                self._wait(run)
            except KeyboardInterrupt:
                self._read_messages(run)  # who took the job: its pid is not read until a wake-up
                if run.pid is None or run.end is not None or run.status is not None:
                    raise
                run.interrupted = True
                self._stop_interrupted(run)
        finally:
            if run.end is None and run.status is None and run.pid is not None:
                kill(run.pid, signal.SIGKILL)  # KeyboardInterrupt or an error here
        run.duration = time.monotonic() - start
        return run

    def _wait(self, run: ChildRun) -> None:
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
            if self._read_messages(run):
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

    def _read_messages(self, run: ChildRun) -> bool:
        """Read what the child wrote to the messages file since; True once it sent its last."""
        while chunk := os.pread(self.messages, 1 << 20, len(run.messages)):
            run.messages += chunk
        return run.parse()

    def _stop_interrupted(self, run: ChildRun) -> None:
        """After Ctrl-C: have the child show where it is (SIGTERM), and wait for it to end.

        Its dumps (csrc/crash_handler.h, faulthandler) end up in its stderr
        tail; after ``INTERRUPT_GRACE`` seconds, or another Ctrl-C, it is
        killed as it is.
        """
        assert run.pid is not None
        kill(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + INTERRUPT_GRACE
        poller = select.poll()
        for fd in (self.stderr_r, self.status_r):
            poller.register(fd, select.POLLIN)
        try:
            while run.pid not in self.ended and self.exit_status is None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                ready = {fd for fd, _ in poller.poll(wait * 1000)}
                if self.stderr_r in ready:
                    run.read_stderr(self.stderr_r)
                if self.status_r in ready:
                    self._read_statuses()
        except KeyboardInterrupt:
            pass
        while run.read_stderr(self.stderr_r) > 0:
            pass
        run.status = self.ended.pop(run.pid, None)
        if run.status is None:
            kill(run.pid, signal.SIGKILL)
            run.status = signal.SIGKILL  # a wait status: killed by SIGKILL

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
        """Stop the server (it kills its waiting children) and reap it."""
        self.forget()
        if self.exit_status is None:
            self.exit_status = os.waitpid(self.pid, 0)[1]

    def forget(self) -> None:
        """Close this process's ends of the server's channels (in a new server: another's)."""
        for fd in (self.lifeline_w, self.jobs_w, self.done_r, self.stderr_r, self.status_r):
            os.close(fd)
        os.close(self.messages)


class ChildRun:
    """One test in a child, seen from the parent: what the child sent and how it ended."""

    def __init__(self, timeout: float | None, tee: bool) -> None:
        self.timeout = timeout
        self.tee = tee
        self.messages = bytearray()  # what the child wrote into the server's messages file
        self.stderr = bytearray()
        self.status: int | None = None  # wait status, if it ended without reporting
        self.server_status: int | None = None  # wait status of the server, if it died
        self.timed_out = False
        self.interrupted = False  # by Ctrl-C in the pytest process
        self.duration = 0.0
        # Serialized, each sent once it was logged, and whether it was an extra one (a subtest).
        self.reports: list[tuple[dict[str, Any], bool]] = []
        self.end: dict[str, Any] | None = None  # the last message; None: the child ended early
        self._reader = MessageReader()

    def parse(self) -> bool:
        """Take the child's pid and whole messages out of ``messages``; True after the last one."""
        for message in self._reader.take(self.messages):
            if "report" in message:
                self.reports.append((message["report"], message["extra"]))
            else:
                self.end = message
        return self.end is not None

    @property
    def pid(self) -> int | None:
        """The child that took the job, once it said so."""
        return self._reader.pid

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


def _teardown_parent(
    item: pytest.Item, nextitem: pytest.Item | None, report: pytest.TestReport
) -> pytest.TestReport:
    """Tear down the parent's nodes ``nextitem`` does not need; merge errors into ``report``."""
    call, sections = pytest_internals.teardown_parent_nodes(item, nextitem)
    report.sections += sections
    if call is None or call.excinfo is None:
        return report
    parent_report: pytest.TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    if report.passed:
        parent_report.sections = list(report.sections)
        return parent_report
    report.sections.append(("teardown in the pytest process", str(parent_report.longrepr)))
    return report


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
