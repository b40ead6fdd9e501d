"""The shared libraries a test's kernels need, for the plugin: which, found where, loaded when.

A test needs the libraries of its ``libs`` setting (``--orcjit-libs``, ini
``orcjit_libs``, the marker's ``libs=``) and, when its flags hold
``-fopenmp``, the OpenMP runtime of each compiler that compiled its sources
(:func:`pytest_orcjit.compiler.openmp_runtime`). They are found in the pytest
process, which runs compilers to find them (the answers are remembered, and
forked children inherit them), and loaded with
:func:`pytest_orcjit.api.load_shared_library` before the test links: by the
fork server before it forks, and in the test's setup (at no cost when loaded
already).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Callable

from . import sanitize, shared_libraries
from .compiler import Compiler, openmp_runtime
from .settings import MSG_LIBRARY, Picked

Needed = tuple[str, tuple[str, ...], str]
"""A library a test needs: (name or path, the compiler to search with, where it was asked for)."""


def needed(
    libs: Picked,
    cxx: Sequence[str],
    flags: Sequence[str],
    compilers: Callable[[], Iterable[Compiler]],
) -> list[Needed]:
    """The ``libs`` (searched with ``cxx``), then the OpenMP runtimes of ``flags``."""
    return [(name, tuple(cxx), libs.origin) for name in libs.value] + runtimes(flags, compilers)


def runtimes(flags: Sequence[str], compilers: Callable[[], Iterable[Compiler]]) -> list[Needed]:
    """The OpenMP and UBSan runtimes that objects compiled with ``flags`` by ``compilers()`` call.

    ``compilers`` gives the compilers of the test's sources; it is called only
    when ``flags`` name ``-fopenmp`` or a UBSan check (``sanitize.undefined_runtimes``).
    """
    found = []
    if any(flag.startswith("-fopenmp") for flag in flags):
        for compiler in compilers():
            runtime = openmp_runtime(compiler, flags)
            if runtime is not None:
                found.append((runtime, compiler.command, f"-fopenmp of {compiler.command[0]}"))
    return found + sanitize.undefined_runtimes(flags, compilers)


def check(libs: Picked, cxx: Sequence[str]) -> None:
    """Find each of ``libs`` now; ValueError naming the first that is not found, and its origin."""
    for name in libs.value:
        try:
            shared_libraries.find(name, cxx)
        except (TypeError, ValueError) as err:
            raise ValueError(MSG_LIBRARY.format(name=name, origin=libs.origin, error=err)) from None


def find_new(libraries: Iterable[Needed], known: set[tuple[str, tuple[str, ...]]]) -> bool:
    """Find the ``libraries`` not ``known`` yet (then known); whether any was found.

    One that is not found is left for :func:`load` to report where the test runs.
    """
    new = False
    for name, compiler, _ in libraries:
        if (name, compiler) not in known:
            try:
                shared_libraries.find(name, compiler)
            except (TypeError, ValueError):
                continue
            known.add((name, compiler))
            new = True
    return new


def load(libraries: Iterable[Needed]) -> None:
    """Load ``libraries``; ValueError naming one that cannot be, and where it was asked for."""
    from .api import load_shared_library

    for name, compiler, origin in libraries:
        try:
            load_shared_library(name, compiler)
        except (TypeError, ValueError) as err:
            raise ValueError(MSG_LIBRARY.format(name=name, origin=origin, error=err)) from None
