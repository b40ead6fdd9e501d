"""The far side of the fork boundary: the fork server and the children it forks.

``serve`` runs in the fork server, a process forked from pytest by
``pytest_orcjit.isolation.ForkServer`` (whose docstring describes the pipes).
It prepares what every child would otherwise do again, then hands over to its
native loop (``orcjit.serve_forks``, ``csrc/fork_server.h``), which keeps
``AHEAD`` children forked ahead, waiting for a job, forks another as soon as
one takes its job, and reports how every child ends. The loop is native so
that the server, once it has forked, writes almost no memory: each page it
wrote would be copied for every later child (Python writes a reference count
into every object it touches), and each huge page split. Children take jobs
in the order they were forked, so that the one warmed the longest runs the
next test. A child returns into Python holding one job (the index of an item),
runs the item through
``pytest_runtest_protocol`` (so the hook wrappers of pytest and of other
plugins apply to that item), sends each report as soon as it is logged (the
phases' own, and extra ones such as subtests'), then its warnings, and leaves
with ``os._exit``.

Warming: after a fork, every page a child writes is first copied, at a couple
of microseconds a page, and a trivial test writes about a thousand pages (the
Python objects pytest's machinery touches). The first child of a server reads
which pages it copied (``/proc/self/pagemap``) and tells the server; every
later child copies those pages while it waits for its job, with
``MADV_POPULATE_WRITE``, stopping as soon as it is next in line and a job
arrives, so that the test finds them copied already. Children warm one at a
time, so that the next in line is not slowed by the one after it. Warming
changes no memory and cannot fault; where
pagemap or MADV_POPULATE_WRITE (Linux 5.14) is missing nothing is warmed.
Before its first fork the server also links the objects of the test it was
started for once, in a throwaway library whose code never runs
(``pytest_orcjit.api.warm_objects``): its children then find those objects
read, checked and their link graphs prepared, work that a library of a
process does only for the first library that adds an object.

Sharing the CPU: on a machine with few cores the fork server's work competes
with the test that runs. Three things keep it out of the test's way. The
server's writable memory is collapsed into transparent huge pages where it
can be (``madvise(MADV_COLLAPSE)``, Linux 6.1, in 2 MiB-aligned windows), so
that each fork copies one page-table entry per 2 MiB instead of 512, and each
child's exit tears down as few. The server runs as ``SCHED_BATCH``, and so do
its children while they warm: that work does not preempt the running test,
yet keeps its fair share of a busy machine; they ask for a long time slice
(Linux 6.12), so that an ordinary process woken on their core (the next test,
the pytest process) preempts them at once. A child that has warmed waits for
its job, and runs it, as an ordinary (``SCHED_OTHER``) process: woken by the
job it takes the CPU at once, and it runs the test as the test would run
without the fork; once it has sent its last message it becomes
``SCHED_IDLE``, so that tearing down its address space takes CPU time nothing
else wants. All three are best effort: where the kernel refuses, nothing
changes.

Backtraces: every tvm-ffi error carries a C++ backtrace, and the first one a
process symbolizes makes tvm-ffi parse the debug information of every loaded
library (about 0.15 s, and 25 MB it keeps, with a Python built with debug
information). The pytest process does that only once a child needed it: a
child reports whether it turned a tvm-ffi error into a Python exception, and
the plugin then prepares the pytest process (``pytest_orcjit.api.prepare_fork``)
and starts a new server, whose children inherit the work. A run whose forked
tests raise no tvm-ffi error never pays for it, in time or in the memory each
fork copies.

This module imports neither the public API nor the native core; the fork
server loads the native core for its loop.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import faulthandler
import os
import pickle
import select
import signal
import struct
import sys
import traceback
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, cast

import pytest
from _pytest.runner import runtestprotocol

if TYPE_CHECKING:
    from _pytest.reports import TestReport

JOB = struct.Struct("<id")  # parent -> child: item index (-1: the server's first item), timeout
PID = struct.Struct("<i")  # child -> parent, first: who took the job
HEADER = struct.Struct("<Q")  # child -> parent, then: the length of each message
STATUS = struct.Struct("<ii")  # server -> parent: pid and wait status of a child that ended
INTERNAL_ERROR = 70  # exit status of a server or child when the fork boundary itself failed
AHEAD = 2  # children the server keeps forked ahead, waiting for a job
RESPAWNS = 3  # waiting children that may die in a row (before taking a job) before the server quits
_CHILD_PLUGIN = "orcjit-forked-child"
_PAGE = os.sysconf("SC_PAGE_SIZE")
_PRESENT, _EXCLUSIVE = 1 << 63, 1 << 56  # /proc/PID/pagemap flags
_WARM_PAGES = 64  # pages warmed at most between two looks for a job
_MADV_COLLAPSE = 25
_HUGE_PAGE = 2 << 20
_libc = ctypes.CDLL(None, use_errno=True)
_madvise = _libc.madvise
_madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


@dataclass(frozen=True)
class Ends:
    """The server's ends of the pipes, and the children's messages file (see ForkServer)."""

    jobs: int
    messages: int
    done: int
    stderr: int
    status: int
    lifeline: int


def serve(
    start_item: pytest.Item,
    ends: Ends,
    tee: bool,
    warning_filters: list[Any],
    warm: Callable[[], object] | None,
) -> NoReturn:
    """The fork server: keep one child waiting for a job; report how each child ends.

    ``start_item`` is the item the parent was running when it forked the
    server (job index -1); ``tee`` whether children send their stderr through
    the stderr pipe; ``warning_filters`` the filters children start from;
    ``warm``, if given, is called once before the first fork (see "Warming"
    above), and what it raises is left for the children to meet.
    """
    status = INTERNAL_ERROR
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the running test
        # Registered once here rather than in each child: registering costs about a millisecond.
        _register_child_plugin(start_item.session)
        _watch_backtraces()
        if warm is not None:
            with contextlib.suppress(Exception):
                warm()
        with contextlib.suppress(Exception):
            _serialize_a_report(start_item)
        from ._ffi_api import serve_forks  # type: ignore[attr-defined]

        serve_forks.release_gil = False  # nothing else runs here; a child returns holding it
        ranges = _writable_ranges()
        _collapse(ranges)
        # Native from here on (csrc/fork_server.h): returns in each child that took a job,
        # and here once the pytest process closed the server.
        job, learn, failed = serve_forks(
            ends.jobs, ends.lifeline, ends.status, AHEAD, RESPAWNS, _WARM_PAGES * _PAGE
        )
        if job:
            _run_job(start_item, ends, tee, warning_filters, ranges, bytes(job), learn)
        status = INTERNAL_ERROR if failed else 0
    except BaseException:
        with contextlib.suppress(BaseException):
            write_all(2, traceback.format_exc().encode())
    finally:
        os._exit(status)


def _run_job(
    start_item: pytest.Item,
    ends: Ends,
    tee: bool,
    warning_filters: list[Any],
    ranges: list[tuple[int, int]],
    job: bytes,
    learn: int,
) -> NoReturn:
    """A child that took a job: run it. Never returns."""
    status = INTERNAL_ERROR
    try:
        if "random" in sys.modules:  # as os.fork()'s at-fork callback would
            sys.modules["random"].seed()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        index, timeout = JOB.unpack(job)
        item = start_item if index < 0 else start_item.session.items[index]
        write_all(ends.messages, PID.pack(os.getpid()))
        status = _child_main(item, ends, tee, timeout > 0, warning_filters)
        if learn >= 0:
            with contextlib.suppress(OSError):
                write_all(learn, _copied_runs(ranges).tobytes())
    except BaseException:
        with contextlib.suppress(BaseException):
            write_all(ends.stderr, traceback.format_exc().encode())
    finally:
        try:
            flush(start_item.config)
        finally:
            _set_scheduler(os.SCHED_IDLE)  # the exit runs beside the next test
            os._exit(status)


class _ChildPlugin:
    """Registered in the fork server: runs a child's item in place and sends what it logs."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.messages = -1  # the file of messages to the parent, once in a child
        self.warnings: list[tuple[Any, ...]] = []  # registering replays the parent's: not those
        self.in_phase = False  # whether the item's setup, call or teardown is running

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> bool:
        # nextitem=None: tear down all this child set up; parent nodes are borrowed.
        runtestprotocol(item, log=True, nextitem=None)
        return True

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self) -> Generator[None, None, None]:
        return (yield from self._phase())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self) -> Generator[None, None, None]:
        return (yield from self._phase())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self) -> Generator[None, None, None]:
        return (yield from self._phase())

    def _phase(self) -> Generator[None, None, None]:
        self.in_phase = True
        try:
            return (yield)
        finally:
            self.in_phase = False

    def pytest_runtest_logreport(self, report: TestReport) -> None:
        """Send each report as it is logged: if a later phase crashes, the earlier ones stand.

        In a child only this plugin and the session see the reports logged
        (``_register_child_plugin``); the parent logs them. A report logged
        while a phase runs is an extra one of the test (pytest's subtests), not
        the phase's own. ``pytest_report_teststatus`` settles the outcome first,
        as logging the report here would have: a test whose subtests failed fails.
        """
        if self.messages >= 0:
            send(self.messages, {"report": _encode(self.config, report), "extra": self.in_phase})

    def pytest_warning_recorded(
        self, warning_message: warnings.WarningMessage, when: str, nodeid: str
    ) -> None:
        if self.messages >= 0:
            self.warnings.append((warning_to_tuple(warning_message), when, nodeid))


def _register_child_plugin(session: pytest.Session) -> None:
    """Register ``_ChildPlugin`` and make it, and the session, all a child logs reports to.

    Logging a report is the parent's work: in a child, the terminal would print
    it, junitxml, the cache and pytest-xdist's worker record or send it. Only
    the session keeps it (it counts failures for ``-x``). The other plugins'
    implementations leave the hook itself, which every hook proxy shares
    (pytest 8's ``config.hook`` keeps the hook it looked up once).
    """
    plugin = _ChildPlugin(session.config)
    session.config.pluginmanager.register(plugin, _CHILD_PLUGIN)
    logreport = session.config.pluginmanager.hook.pytest_runtest_logreport
    for impl in logreport.get_hookimpls():
        if impl.plugin is not plugin and impl.plugin is not session:
            logreport._remove_plugin(impl.plugin)


def _child_main(
    item: pytest.Item, ends: Ends, redirect: bool, dump_on_term: bool, warning_filters: list[Any]
) -> int:
    """The child: run the item's protocol, send its last message; returns the exit status."""
    stderr_fd = ends.stderr
    if redirect:
        os.dup2(stderr_fd, 2)
    if faulthandler.is_enabled():
        faulthandler.enable(file=stderr_fd, all_threads=True)
    if dump_on_term:  # a timeout's SIGTERM shows where the test hangs, then kills
        faulthandler.register(signal.SIGTERM, file=stderr_fd, all_threads=True, chain=True)
    _borrow_parent_nodes(item.session)
    # The server may have been forked inside another item's warning context.
    warnings.filters = list(warning_filters)  # type: ignore[attr-defined]
    warnings._filters_mutated()  # type: ignore[attr-defined]
    config = item.config
    plugin = cast(_ChildPlugin, config.pluginmanager.get_plugin(_CHILD_PLUGIN))
    plugin.messages = ends.messages
    end: dict[str, Any] = {}
    try:
        item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
    except pytest.exit.Exception as exc:
        end["exit"] = (exc.msg, exc.returncode)
    except KeyboardInterrupt:
        end["interrupted"] = True
    end["warnings"] = plugin.warnings
    end["backtraced"] = _backtraced
    flush(config)  # all output before the last message: the parent goes on once it has it
    send(ends.messages, end)
    os.write(ends.done, b"\0")  # the one wake-up of the parent in a test that reports back
    return 0


def send(fd: int, message: dict[str, Any]) -> None:
    """One message of a child to the parent: its length, then the pickled dict.

    ``fd`` is the server's messages file: written as soon as a report is made,
    a message survives the child's crash, yet wakes nobody.
    """
    payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    write_all(fd, HEADER.pack(len(payload)) + payload)


_backtraced = False  # whether this process turned a tvm-ffi error into a Python exception


def _encode(config: pytest.Config, report: TestReport) -> dict[str, Any]:
    """What a child does with each report it logs: settle its outcome, then serialize it."""
    config.hook.pytest_report_teststatus(report=report, config=config)
    data: dict[str, Any] = config.hook.pytest_report_to_serializable(config=config, report=report)
    return data


def _serialize_a_report(item: pytest.Item) -> None:
    """Do here what a child does with each report it logs (``_encode``), once; drop the result.

    pytest's ``_report_to_json`` asks ``isinstance(value, os.PathLike)`` of
    each field, and the first answer for each type walks the ABC's registry
    and fills its caches; ``pytest_report_teststatus`` reads options the
    pytest process has not read yet. Done here, children find all that done
    (0.1 ms of a trivial test).
    """
    config = item.config
    report = pytest.TestReport(
        nodeid=item.nodeid,
        location=item.location,
        keywords={},
        outcome="passed",
        longrepr=None,
        when="call",
        duration=0.0,  # floats, as in the reports children make
        start=0.0,
        stop=0.0,
    )
    _encode(config, report)


def _watch_backtraces() -> None:
    """Set ``_backtraced`` once a tvm-ffi error reaches Python (see the module docstring).

    tvm-ffi hands each such error, with its backtrace, to
    ``tvm_ffi.core._WITH_APPEND_BACKTRACE``; this wraps that hook. Without
    tvm-ffi loaded, or without the hook, nothing is watched.
    """
    core = sys.modules.get("tvm_ffi.core")
    append = getattr(core, "_WITH_APPEND_BACKTRACE", None)
    if append is None:
        return

    def noting(error: BaseException, backtrace: str) -> BaseException:
        global _backtraced
        _backtraced = True
        return cast(BaseException, append(error, backtrace))

    core._WITH_APPEND_BACKTRACE = noting  # type: ignore[union-attr]


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


def _writable_ranges() -> list[tuple[int, int]]:
    """The writable private mappings of this process (the stack aside), each up to 1 GiB."""
    ranges = []
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if fields[1][1] != "w" or fields[1][3] != "p" or fields[-1].startswith("[s"):
                continue
            low, high = (int(bound, 16) for bound in fields[0].split("-"))
            if high - low <= 1 << 30:
                ranges.append((low, high))
    return sorted(ranges)


def _collapse(ranges: list[tuple[int, int]]) -> None:
    """Back the 2 MiB-aligned windows of ``ranges`` with transparent huge pages, where possible.

    ``madvise(MADV_COLLAPSE)`` (Linux 6.1) copies a window's pages into one
    huge page (zero-filling those not touched yet) and changes no content; a
    window it cannot collapse (file-backed, THP off, an older kernel) stays
    as it is.
    """
    for low, high in ranges:
        start = -(-low // _HUGE_PAGE) * _HUGE_PAGE
        for window in range(start, high - _HUGE_PAGE + 1, _HUGE_PAGE):
            _madvise(window, _HUGE_PAGE, _MADV_COLLAPSE)


def _set_scheduler(policy: int) -> None:
    """Make this process run under ``policy`` (priority 0), if the kernel lets it."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, policy, os.sched_param(0))


def _copied_runs(ranges: list[tuple[int, int]]) -> array.array[int]:
    """The pages of ``ranges`` this child copied (present and no longer shared), as runs.

    Flat (address, length in bytes) pairs of at most ``_WARM_PAGES`` pages each.
    """
    runs = array.array("Q")
    with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
        for low, high in ranges:
            entries = array.array("Q")
            size, offset = (high - low) // _PAGE * 8, low // _PAGE * 8
            entries.frombytes(os.pread(pagemap.fileno(), size, offset))
            for index, entry in enumerate(entries):
                if not (entry & _PRESENT and entry & _EXCLUSIVE):
                    continue
                page = low + index * _PAGE
                if runs and runs[-2] + runs[-1] == page and runs[-1] < _WARM_PAGES * _PAGE:
                    runs[-1] += _PAGE
                else:
                    runs.extend((page, _PAGE))
    return runs


def warning_to_tuple(warning: warnings.WarningMessage) -> tuple[Any, ...]:
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


def flush(config: pytest.Config) -> None:
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


def write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def read_into(fd: int, buffer: bytearray) -> int:
    """Append what ``fd`` has to ``buffer``: bytes read, 0 at end of file, -1 if none for now."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:  # non-blocking, and a grandchild may still hold the pipe open
        return -1
    buffer += chunk
    return len(chunk)


def kill(pid: int, signum: int) -> None:
    """``os.kill``, except that a process already gone is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
