"""The far side of the fork boundary: the fork server and the children it forks.

``serve`` runs in the fork server, a process forked from pytest by
:class:`pytest_orcjit.isolation.ForkServer`. It does once what every child
would otherwise do again (registers the child plugin, links the test's objects
in a throwaway library, serializes a report), collapses its memory into huge
pages (fewer page-table entries for each fork to copy), then hands over to the
native loop (``orcjit.serve_forks``, ``csrc/fork_server.h``), which keeps
``AHEAD`` children forked ahead, waiting for a job, and reports how each ends.
A child returns into Python holding one job, runs its item through
``pytest_runtest_protocol``, sends each report as it is logged, then its
warnings (:mod:`pytest_orcjit.protocol`), and leaves with ``os._exit``. The
first child also reports which pages it copied, which later children copy
while they wait (warming). What this asks of the kernel (huge pages, pagemap,
warming, scheduling) is native, in ``csrc/fork_tuning.h``.
``docs/architecture.md`` describes the design and why.

A child also reports the modules it imported, which the pytest process
imports for later tests (:mod:`pytest_orcjit.learned_imports`), and whether it
turned a tvm-ffi error into a Python exception (whose backtrace made tvm-ffi
build its symbolizer): the plugin then builds it once in the pytest process,
for the children of a new server to inherit.

This module imports neither the public API nor the native core; the fork
server loads the native core for its loop.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Generator
from typing import Any, NoReturn, cast

import pytest

from . import learned_imports, pytest_internals
from .protocol import INTERNAL_ERROR, JOB, PID, Ends, send, write_all

AHEAD = 2  # children the server keeps forked ahead, waiting for a job
RESPAWNS = 3  # waiting children that may die in a row (before taking a job) before the server quits
WARM_BATCH = 64 * os.sysconf("SC_PAGE_SIZE")  # bytes warmed at most between two looks for a job
_CHILD_PLUGIN = "orcjit-forked-child"


def serve(
    start_item: pytest.Item,
    ends: Ends,
    tee: bool,
    warning_filters: list[Any],
    warm: Callable[[], object] | None,
) -> NoReturn:
    """The fork server: keep ``AHEAD`` children waiting for a job; report how each child ends.

    ``start_item`` is the item the parent was running when it forked the
    server (job index -1); ``tee`` whether children send their stderr through
    the stderr pipe; ``warning_filters`` the filters children start from;
    ``warm``, if given, is called once before the first fork (it links the
    test's objects, ``pytest_orcjit.api.warm_objects``), and what it raises is
    left for the children to meet.
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
        from . import _ffi_api

        # Children inherit it: a crash, a timeout or a Ctrl-C shows the native stack of the test.
        _ffi_api.install_crash_handler(ends.stderr, True)  # type: ignore[attr-defined]
        serve_forks = _ffi_api.serve_forks  # type: ignore[attr-defined]
        serve_forks.release_gil = False  # nothing else runs here; a child returns holding it
        global _modules
        _modules = learned_imports.snapshot()
        ranges = bytes(_ffi_api.writable_ranges())  # type: ignore[attr-defined]
        _ffi_api.collapse_huge_pages(ranges)  # type: ignore[attr-defined]
        # Native from here on (csrc/fork_server.h): returns in each child that took a job,
        # and here once the pytest process closed the server.
        job, learn, failed = serve_forks(
            ends.jobs, ends.lifeline, ends.status, AHEAD, RESPAWNS, WARM_BATCH
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
    ranges: bytes,
    job: bytes,
    learn: int,
) -> NoReturn:
    """A child that took a job: run it. Never returns.

    ``ranges`` are the server's writable memory (``orcjit.writable_ranges``);
    ``learn``, in the first child only, where to report which of their pages
    it copied (``orcjit.copied_pages``), for later children to warm.
    """
    from . import _ffi_api

    status = INTERNAL_ERROR
    try:
        if "random" in sys.modules:  # as os.fork()'s at-fork callback would
            sys.modules["random"].seed()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        index, _timeout = JOB.unpack(job)
        item = start_item if index < 0 else start_item.session.items[index]
        write_all(ends.messages, PID.pack(os.getpid()))
        status = _child_main(item, ends, tee, warning_filters)
        if learn >= 0:
            with contextlib.suppress(OSError):
                copied = _ffi_api.copied_pages(ranges, WARM_BATCH)  # type: ignore[attr-defined]
                write_all(learn, bytes(copied))
    except BaseException:
        with contextlib.suppress(BaseException):
            write_all(ends.stderr, traceback.format_exc().encode())
    finally:
        try:
            pytest_internals.flush(start_item.config)
        finally:
            with contextlib.suppress(Exception):  # the exit runs beside the next test
                _ffi_api.set_scheduler(os.SCHED_IDLE)  # type: ignore[attr-defined]
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
        pytest_internals.run_test_protocol(item, log=True, nextitem=None)
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

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
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
    pytest_internals.keep_only_log_reporters(session.config, (plugin, session))


def _child_main(item: pytest.Item, ends: Ends, redirect: bool, warning_filters: list[Any]) -> int:
    """The child: run the item's protocol, send its last message; returns the exit status."""
    stderr_fd = ends.stderr
    if redirect:
        os.dup2(stderr_fd, 2)
    if faulthandler.is_enabled():
        faulthandler.enable(file=stderr_fd, all_threads=True)
    # A timeout's or Ctrl-C's SIGTERM shows where the test hangs (then the native stack,
    # csrc/crash_handler.h), then kills.
    faulthandler.register(signal.SIGTERM, file=stderr_fd, all_threads=True, chain=True)
    pytest_internals.borrow_parent_nodes(item.session)
    # The server may have been forked inside another item's warning context.
    pytest_internals.set_warning_filters(warning_filters)
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
    if len(sys.modules) != len(_modules):
        end["imported"] = learned_imports.imported_since(_modules)
    # All output before the last message: the parent goes on once it has it.
    pytest_internals.flush(config)
    send(ends.messages, end)
    os.write(ends.done, b"\0")  # the one wake-up of the parent in a test that reports back
    return 0


_backtraced = False  # whether this process turned a tvm-ffi error into a Python exception
_modules: frozenset[str] = frozenset()  # the modules the fork server had when it forked


def _encode(config: pytest.Config, report: pytest.TestReport) -> dict[str, Any]:
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
    ``tvm_ffi.core._WITH_APPEND_BACKTRACE`` (a private part of tvm-ffi, not of
    pytest); this wraps that hook. Without tvm-ffi loaded, or without the
    hook, nothing is watched.
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
