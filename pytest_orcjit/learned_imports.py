"""Modules that forked tests import, imported once into the pytest process for later tests.

A forked test starts from a snapshot of the pytest process, and what its
child imports is lost with the child: ``np.random``, which numpy loads on
first use, cost every test of a suite using ``np.random.default_rng`` 7 ms
of its own. So each child reports the modules it added to ``sys.modules``
(``imported_since``, with the file each came from); the pytest process
imports those it can find at the same file (``learn``), and the next fork
server is a snapshot with them imported, as an in-process run would hold
them after its first test. Off with ``orcjit_learn_imports = false``.

Importing into the pytest process must not start a thread there (every
later fork would copy a process with threads): once a learned import did,
learning stops and a warning names the modules.

What a run learned is remembered in pytest's cache (``remember``), with
whether a forked test built tvm-ffi's backtrace symbolizer: the next run
does both before its first fork (``remembered``), rather than once in a
child and again here.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from typing import Any

import pytest

MSG_THREADS = (
    "orcjit: importing {names} into the pytest process (modules forked tests imported, for "
    "later tests to find imported) started a thread; forked tests now start from a process with "
    "threads. Set orcjit_learn_imports = false in the ini file if forked tests hang"
)

Imported = list[tuple[str, str]]
"""(module name, the file it was loaded from) of each module a child imported."""
CACHE_KEY = "orcjit/learned"


def snapshot() -> frozenset[str]:
    """The modules loaded now (taken in the fork server, before it forks)."""
    return frozenset(sys.modules)


def imported_since(before: frozenset[str]) -> Imported:
    """The modules loaded since ``before`` that came from a file, in import order."""
    found = []
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None)
        if name not in before and getattr(spec, "has_location", False) and origin:
            found.append((name, str(origin)))
    return found


def learn(imported: Iterable[tuple[str, str]]) -> tuple[list[str], bool]:
    """Import here each of ``imported`` found at the same file: the names imported, and
    whether importing them started a thread.

    A module found elsewhere, or not at all, from here (a test's own
    ``sys.path``, a module of pytester's temporary directory), or whose
    import raises, is left for each child to import itself.
    """
    threads = _threads()
    done = []
    for name, origin in imported:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin != origin:
                continue
            importlib.import_module(name)
        except Exception:  # each child meets it again, as its own
            continue
        done.append(name)
    return done, bool(done) and _threads() > threads


def _threads() -> int:
    """The threads of this process (native ones included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def remembered(config: pytest.Config) -> tuple[bool, Imported]:
    """What the last run remembered: whether it built the symbolizer, the modules it learned."""
    cache = getattr(config, "cache", None)
    found: Any = cache.get(CACHE_KEY, None) if cache is not None else None
    if not isinstance(found, dict):
        return False, []
    entries = found.get("imports")
    imported = [
        (entry[0], entry[1])
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)
    ]
    return found.get("backtraced") is True, imported


def remember(config: pytest.Config, backtraced: bool, imported: Imported) -> None:
    """Remember this run's ``remembered`` for the next (without pytest's cache: nothing)."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        cache.set(CACHE_KEY, {"backtraced": backtraced, "imports": [list(p) for p in imported]})
