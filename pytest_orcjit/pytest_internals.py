"""Every use of pytest's, pluggy's and CPython's private parts, in one place.

The fork boundary runs a test's protocol in another process and keeps the
pytest process's set-up nodes, captures and hooks as pytest would; pytest has
no public API for some of that. Everything that reaches for an underscore
attribute or an ``_pytest`` module does it through a function here, so that a
new pytest (or pluggy, or Python) is audited in this file alone: each
function names what it relies on. Tested on pytest 8 and 9 (``.ci/run``).
See ``docs/architecture.md`` for how the fork boundary uses them.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Any

import pytest

# _pytest.runner.runtestprotocol: a test's setup, call and teardown, each logged (pytest >= 3).
from _pytest.runner import runtestprotocol as run_test_protocol

# _pytest.skipping: the xfail marks, as pytest evaluates them in an item's setup.
from _pytest.skipping import evaluate_xfail_marks, xfailed_key

__all__ = [
    "borrow_parent_nodes",
    "captured",
    "evaluate_xfail",
    "faulthandler_fd",
    "fixture_defs",
    "fixture_users",
    "flush",
    "hold_session_fixture",
    "keep_only_log_reporters",
    "parent_stack",
    "read_global_capture",
    "run_test_protocol",
    "set_warning_filters",
    "teardown_parent_nodes",
]


def _setup_stack(session: pytest.Session) -> dict[Any, Any]:
    """``session._setupstate.stack``: each set-up node -> (its finalizers, its setup error)."""
    stack: dict[Any, Any] = session._setupstate.stack
    return stack


def parent_stack(session: pytest.Session) -> tuple[Any, ...]:
    """The nodes this process holds set up (their fixtures are what children share)."""
    return tuple(_setup_stack(session))


def borrow_parent_nodes(session: pytest.Session) -> None:
    """Make a child's teardown run only the finalizers the child itself adds.

    The parent's set-up stack is always a prefix of the item's chain. The child
    keeps those nodes (and the fixtures cached on them) but with empty finalizer
    lists, so tearing everything down at the end runs exactly what the child
    set up, never the parent's finalizers.
    """
    stack = _setup_stack(session)
    for node, (_, exc) in list(stack.items()):
        stack[node] = ([], exc)


def fixture_defs(item: pytest.Item, name: str) -> list[Any]:
    """``item._fixtureinfo.name2fixturedefs[name]``: the definitions of a fixture ``item`` gets,
    the one it gets last (empty if none)."""
    info = getattr(item, "_fixtureinfo", None)
    found = info.name2fixturedefs.get(name) if info is not None else None
    return list(found or ())


def fixture_users(item: pytest.Item, name: str) -> list[Any]:
    """The functions of ``item`` that take the fixture ``name`` as an argument: the test function
    (``item._fixtureinfo.argnames``) and the fixtures it gets (``FixtureDef.func`` of each in
    ``name2fixturedefs`` whose ``argnames`` hold ``name``)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    users = [getattr(item, "function", item)] if name in info.argnames else []
    for fixturedefs in info.name2fixturedefs.values():
        users += [d.func for d in fixturedefs if name in d.argnames]
    return users


def hold_session_fixture(item: pytest.Item, name: str) -> None:
    """Set up the session-scoped fixture ``name`` of ``item`` here, in the pytest process.

    The session node joins the set-up stack as ``SetupState.setup`` would put
    it there (it is the first node of every item's chain), and the fixture's
    finalizer goes onto it: children then find the fixture set up, as after an
    in-process test that used it, and it is torn down once, here, when the
    session ends. Uses ``item._request.getfixturevalue``.
    """
    session = item.session
    stack = _setup_stack(session)
    fixturedef = fixture_defs(item, name)[-1]
    if session in stack and fixturedef.cached_result is not None:
        return  # held since an earlier test
    if session not in stack:
        stack[session] = ([session.teardown], None)
        session.setup()
    # pytest 9.1 deprecates a request setting up fixtures while its node is not set up (not on the
    # stack): the item stands there, with no finalizers, for as long as the request runs.
    stack[item] = ([], None)
    try:
        with captured(item, "setup"):
            item._request.getfixturevalue(name)  # type: ignore[attr-defined]
    finally:
        del stack[item]


def teardown_parent_nodes(
    item: pytest.Item, nextitem: pytest.Item | None
) -> tuple[pytest.CallInfo[None] | None, list[tuple[str, str]]]:
    """Tear down the nodes this process holds that ``nextitem`` does not need.

    Returns the call (None if nothing was to be torn down) and the report
    sections of what the teardown wrote (taken from ``item._report_sections``).
    """
    session = item.session
    state = session._setupstate
    if not state.stack:
        return None, []
    if session.shouldfail or session.shouldstop:
        nextitem = None
    needed = nextitem.listchain() if nextitem is not None else []
    if all(node in needed for node in state.stack):
        return None, []  # nextitem needs every node held here: nothing to tear down
    sections = item._report_sections
    start = len(sections)
    with captured(item, "teardown"):
        call = pytest.CallInfo.from_call(lambda: state.teardown_exact(nextitem), when="teardown")
    added = [(f"Captured {key} {when}", text) for when, key, text in sections[start:]]
    del sections[start:]
    return call, added


def captured(item: pytest.Item, when: str) -> contextlib.AbstractContextManager[None]:
    """pytest's output capture around a phase, for what the pytest process runs of ``item``.

    What is written goes into ``item``'s report sections, as in pytest's own
    phases, and global capture is left suspended after it, as pytest leaves it
    between phases (even if a hook resumed it, as ``--setup-show`` does). Uses
    the capture manager's ``item_capture``.
    """
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        return contextlib.nullcontext()
    return capman.item_capture(when, item)  # type: ignore[no-any-return]


def read_global_capture(config: pytest.Config) -> tuple[str, str] | None:
    """What pytest's global capture (``--capture=fd``/``sys``) holds: (stdout, stderr), or None."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None or not capman.is_globally_capturing():
        return None
    out, err = capman.read_global_capture()
    return out, err


def faulthandler_fd(config: pytest.Config) -> int | None:
    """The descriptor pytest's faulthandler plugin writes to (its dup of the real stderr).

    ``_pytest.faulthandler.fault_handler_stderr_fd_key`` (pytest >= 7); None
    where pytest has no such key or the plugin is off.
    """
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key
    except ImportError:
        return None
    return config.stash.get(fault_handler_stderr_fd_key, None)


def evaluate_xfail(item: pytest.Item) -> None:
    """Evaluate ``item``'s xfail marks into its stash, as pytest's setup would.

    ``pytest_runtest_makereport`` then treats a failure made here as the
    skipping plugin treats any failure of the item (``xfailed_key``).
    """
    item.stash[xfailed_key] = evaluate_xfail_marks(item)


def keep_only_log_reporters(config: pytest.Config, keep: tuple[object, ...]) -> None:
    """Remove every ``pytest_runtest_logreport`` implementation but those of ``keep``.

    Removed from the hook itself, which every hook proxy shares (pytest 8's
    ``config.hook`` keeps the hook it looked up once), with pluggy's
    ``HookCaller._remove_plugin``.
    """
    logreport = config.pluginmanager.hook.pytest_runtest_logreport
    for impl in logreport.get_hookimpls():
        if all(impl.plugin is not plugin for plugin in keep):
            logreport._remove_plugin(impl.plugin)


def flush(config: pytest.Config) -> None:
    """Flush what Python buffered, the terminal writer's ``_tw`` included, so that parent and
    child never both write it."""
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


def set_warning_filters(filters: list[Any]) -> None:
    """Make ``filters`` the warning filters, as a new process starting from them would have them.

    CPython caches filter lookups until ``warnings._filters_mutated()`` is called.
    """
    warnings.filters = list(filters)  # type: ignore[attr-defined]
    warnings._filters_mutated()  # type: ignore[attr-defined]
