"""Modules that forked tests import, imported once into the pytest process for later tests.

A forked test starts from a snapshot of the pytest process, and what its
child imports is lost with the child: ``np.random``, which numpy loads on
first use, cost every test of a suite using ``np.random.default_rng`` 7 ms
of its own. So each child reports the modules it added to ``sys.modules``
(``imported_since``, with the file each came from); the pytest process
imports those it can find at the same file (``learn``), unless that file is
the project's own (under the rootdir: a test may count on importing its
helpers afresh), and the next fork server is a snapshot with them imported,
as an in-process run would hold them after its first test. Off with
``orcjit_learn_imports = false``.

Importing into the pytest process must not start a thread there (every
later fork would copy a process with threads, and initialising CUDA starts
some): each batch is imported first in a throwaway child, and a module whose
import started a thread there is not imported here; learning stops, and a
warning names it.

What a run learned is remembered in pytest's cache (``remember``), with
whether a forked test built tvm-ffi's backtrace symbolizer: the next run
does both before its first fork (``remembered``), rather than once in a
child and again here.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

MSG_THREADS = (
    "orcjit: importing {name} starts a thread, so the pytest process does not import it for "
    "later forked tests (learned imports), and learns no more imports in this run: each forked "
    "test imports it, and those after it, itself"
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


def learn(imported: Iterable[tuple[str, str]], root: Path) -> tuple[list[str], list[str]]:
    """Import here each of ``imported`` found at the same file outside ``root``, unless importing
    it starts a thread.

    Returns the names imported, and those not imported because importing
    them started a thread (tried first in a throwaway child of this process,
    so that this one never runs such an import: the first such module, and
    the ones after it, are left). A module found elsewhere, or not at all,
    from here (a test's own ``sys.path``, a module of pytester's temporary
    directory), or whose import raises, is left for each child to import
    itself.
    """
    root = root.resolve()
    wanted = [
        (name, origin)
        for name, origin in imported
        if name not in sys.modules and not Path(origin).resolve().is_relative_to(root)
    ]
    if not wanted:
        return [], []
    safe, threaded = _try_in_child(wanted)
    done = [name for name, origin in wanted if name in safe and _import(name, origin)]
    return done, threaded


def _try_in_child(wanted: Imported) -> tuple[set[str], list[str]]:
    """Import ``wanted`` in a forked child: the names it imported before one started a thread,
    and the names from that one on (nothing at all if the child died)."""
    read_end, write_end = os.pipe()
    pid = _fork()
    if pid == 0:  # the child: report, never return
        try:
            os.close(read_end)
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 1)
                os.dup2(null.fileno(), 2)
            threads, safe, rest = _threads(), [], []
            for index, (name, origin) in enumerate(wanted):
                if _import(name, origin) and _threads() > threads:
                    rest = [name for name, _ in wanted[index:]]
                    break
                safe.append(name)
            os.write(write_end, json.dumps([safe, rest]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    try:
        safe, rest = json.loads(data)
    except ValueError:
        return set(), []
    return set(safe), list(rest)


def _import(name: str, origin: str) -> bool:
    """Import ``name`` if it is found at ``origin``; whether it is imported."""
    try:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin != origin:
            return False
        importlib.import_module(name)
    except Exception:  # each child meets it again, as its own
        return False
    return True


def _fork() -> int:
    """``os.fork()``, without Python 3.12's warning about pytest-xdist's I/O thread.

    The child runs no thread but its own, and only imports.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*multi-threaded.*fork", DeprecationWarning)
        return os.fork()


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
