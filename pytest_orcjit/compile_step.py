"""The compile step: which sources each test needs, compiling them once per run, and counting.

The run's :class:`~pytest_orcjit.compiler.Builder` is made on first use from
the session settings (an unusable compiler is a usage error naming its
option). Every unit the selected tests need is compiled in parallel after
collection; a forked test's ``orcjit_compile`` tells the pytest process what it
compiled, for the summary. The fixtures of :mod:`pytest_orcjit.plugin` are thin
wrappers over the functions here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from . import error_sources, kernel_libraries, sanitize
from .cache import CacheWarning
from .compiler import (
    CUDA_SUFFIXES,
    Builder,
    CompileError,
    Compiler,
    CompilerNotFound,
    CudaToolchain,
    Outcome,
    Stats,
    Unit,
    find_cc,
    find_cxx,
)
from .run_state import STATE, State, item_settings
from .validators import Picked, split_flags

MSG_NO_COMPILER = (
    "orcjit: cannot use the {kind} compiler {command!r} (from {origin}): {reason}; "
    "choose one with {flag} (ini {ini})"
)
MSG_COMPILE_FAILED = "orcjit: {source} failed to compile:\n{diagnostics}"
MSG_COMPILE_FAILED_AGAIN = (
    "orcjit: {source} failed to compile (its diagnostics are in the error of {first})"
)
MSG_SUMMARY = (
    "orcjit: compiled {compiled}, reused {reused} from cache{failed}, "
    "compile wall time {seconds:.2f}s"
)


def units_of(item: pytest.Item) -> list[Unit]:
    """The units an item's objects come from (none if it does not ask for objects)."""
    resolved = item_settings(item)
    if isinstance(resolved, str) or "orcjit_objects" not in getattr(item, "fixturenames", ()):
        return []
    sanitized = (*sanitize.flags(resolved.sanitize.value), *resolved.flags)
    return [
        Unit(source, resolved.flags if source.suffix in CUDA_SUFFIXES else sanitized)
        for source in resolved.sources
    ]


def compile_units(config: pytest.Config, units: Sequence[Unit]) -> dict[Unit, Outcome]:
    """Outcomes of ``units``, compiling in parallel those not compiled yet in this run."""
    state = config.stash[STATE]
    missing = [unit for unit in units if unit not in state.outcomes]
    if missing:
        state.outcomes.update(builder(config).compile_many(missing, state.settings.jobs))
        state.generation += 1
        for unit in missing:
            if state.outcomes[unit].object not in (None, unit.source):
                state.sources[state.outcomes[unit].object] = unit.source  # type: ignore[index]
    outcomes = {unit: state.outcomes[unit] for unit in units}
    for outcome in outcomes.values():
        for note in outcome.notes:
            warnings.warn(note, CacheWarning, stacklevel=1)
        outcome.notes.clear()
    return outcomes


def builder(config: pytest.Config) -> Builder:
    """The run's Builder; an unusable compiler is a pytest.UsageError naming its option."""
    state = config.stash[STATE]
    if state.builder is None:
        s = state.settings
        cache_dir = _cache_dir(config)
        probe = functools.partial(_probe, cache_dir=cache_dir, launcher=s.launcher)
        cxx = probe(s.cxx.value or find_cxx(), s.cxx.origin, "C++", "cxx")
        cc_origin = s.cc.origin if s.cc.value else f"the C twin of {cxx.driver[0]}"
        cc = probe(find_cc(shlex.join(cxx.driver), s.cc.value), cc_origin, "C", "cc")
        cuda = CudaToolchain(s.nvcc.value, s.cuda_archs, s.nvcc_flags, cache_dir, s.launcher)
        state.builder = Builder(
            cxx, cache_dir, cc=cc, std=s.std, cflags=s.cflags, cuda=cuda, use_pch=s.pch
        )
    return state.builder


def libraries_of(item: pytest.Item) -> list[kernel_libraries.Needed]:
    """The shared libraries the item needs (``kernel_libraries.needed``)."""
    resolved = item_settings(item)
    if isinstance(resolved, str) or not resolved.uses_orcjit:
        return []

    def compilers() -> set[Compiler]:
        b = builder(item.config)
        return {b.cc if unit.source.suffix == ".c" else b.cxx for unit in units_of(item)} or {b.cxx}

    flags = [
        *sanitize.flags(resolved.sanitize.value),
        *item.config.stash[STATE].settings.cflags,
        *resolved.flags,
    ]
    needed = kernel_libraries.needed(resolved.libs, cxx_command(item.config), flags, compilers)
    if any(unit.source.suffix in CUDA_SUFFIXES for unit in units_of(item)):
        from . import cuda  # CUDA objects register their fatbins with the CUDA runtime

        needed.append((cuda.runtime_library(), (), "the .cu sources"))
    return needed


def cxx_command(config: pytest.Config) -> list[str]:
    """The C++ compiler whose library paths --orcjit-libs names are searched in first.

    Picked once per run: every test's setup asks, and ``find_cxx`` lists PATH's folders.
    """
    state = config.stash[STATE]
    if state.cxx_command is None:
        state.cxx_command = tuple(shlex.split(state.settings.cxx.value or find_cxx()))
    return list(state.cxx_command)


def objects_of(item: pytest.Item) -> list[Path]:
    """The compiled objects of ``item`` (``orcjit_objects``); a failed compile fails the test.

    The first test to meet a source's compile error shows its diagnostics; the
    others point to that test.
    """
    outcomes = compile_units(item.config, units_of(item))
    for unit, outcome in outcomes.items():
        if outcome.error is not None:
            source = error_sources.relative(unit.source, item.config.rootpath)
            first = show_failure(item, unit)
            message = (
                MSG_COMPILE_FAILED.format(source=source, diagnostics=outcome.error.diagnostics)
                if first == item.nodeid
                else MSG_COMPILE_FAILED_AGAIN.format(source=source, first=first)
            )
            pytest.fail(message, pytrace=False)
    return [outcome.object for outcome in outcomes.values() if outcome.object is not None]


def compile_for_test(
    config: pytest.Config,
    base: Path,
    source: Any,
    cflags: Sequence[str],
    language: str,
    sanitizers: Sequence[str] = (),
) -> Path:
    """What ``orcjit_compile(source, cflags, language)`` does for a test in ``base``.

    Loads the runtimes the flags call for (``-fopenmp``, ``-fsanitize=undefined``);
    a forked test tells the pytest process what it compiled (``report_child_stats``).
    ``sanitizers`` are the test's (``pytest_orcjit.sanitize``); .cu sources get none.
    """
    __tracebackhide__ = True  # a failed compile shows the test's line, then the diagnostics
    flags = split_flags(Picked(cflags, "orcjit_compile(cflags=...)"), "cflags")
    is_text = isinstance(source, str) and "\n" in source
    if not (language == "cuda" if is_text else str(source).endswith(CUDA_SUFFIXES)):
        flags = (*sanitize.flags(sanitizers), *flags)
    state, built = config.stash[STATE], builder(config)
    before = Stats()
    before.add(built.stats)
    try:
        if isinstance(source, str) and "\n" in source:
            obj, is_c = built.compile_text(source, flags, language), language == "c"
        else:
            path = base / source
            if not path.is_file():
                raise FileNotFoundError(
                    f"orcjit_compile: no such source file {path}; a path is relative to the "
                    "test file's directory, and source text must span lines (contain a newline)"
                )
            obj, is_c = built.compile(path, flags), path.suffix == ".c"
            state.sources[obj] = path
    except CompileError as err:
        raise CompileError(err.source, err.command, err.diagnostics, err.what) from None
    finally:
        if os.getpid() != state.pid:  # a forked test: tell the pytest process what it did
            report_child_stats(state, built.stats, before)
    compilers = lambda: [built.cc if is_c else built.cxx]  # noqa: E731
    kernel_libraries.load(kernel_libraries.runtimes([*state.settings.cflags, *flags], compilers))
    return obj


def show_failure(item: pytest.Item, unit: Unit) -> str:
    """The test whose error shows ``unit``'s compile diagnostics: the first to ask."""
    return item.config.stash[STATE].failures_shown.setdefault(unit, item.nodeid)


def run_stats(state: State) -> Stats:
    """What this process and its forked tests compiled, reused and failed to compile."""
    stats = Stats()
    if state.builder is not None:
        stats.add(state.builder.stats)
    if state.children_stats is not None and state.children_stats.exists():
        for line in state.children_stats.read_text().splitlines():
            with contextlib.suppress(ValueError):
                stats.add(Stats.from_json(json.loads(line)))
    return stats


def report_child_stats(state: State, stats: Stats, before: Stats) -> None:
    """Append, for the pytest process, what a forked test's compile added to ``stats``."""
    if state.children_stats is None:
        return
    added = Stats(
        stats.compiled - before.compiled, stats.reused - before.reused, stats.failed - before.failed
    )
    line = json.dumps(added.to_json()) + "\n"
    with contextlib.suppress(OSError):
        fd = os.open(state.children_stats, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())  # one write: lines of concurrent children do not mix
        finally:
            os.close(fd)


def _probe(
    command: str, origin: str, kind: str, name: str, cache_dir: Path, launcher: Sequence[str]
) -> Compiler:
    try:
        return Compiler.probe(command, cache_dir, launcher)
    except CompilerNotFound as err:
        flag, ini = f"--orcjit-{name}", f"orcjit_{name}"
        raise pytest.UsageError(
            MSG_NO_COMPILER.format(
                kind=kind, command=command, origin=origin, reason=err, flag=flag, ini=ini
            )
        ) from None


def _cache_dir(config: pytest.Config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:  # cleared by --cache-clear along with the rest of the cache
        return Path(cache.mkdir("orcjit"))
    state = config.stash[STATE]
    if state.temporary_cache is None:  # -p no:cacheprovider: removed at the end of the run
        state.temporary_cache = Path(tempfile.mkdtemp(prefix="pytest-orcjit-"))
    return state.temporary_cache
