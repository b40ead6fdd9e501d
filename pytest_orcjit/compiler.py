"""Compiling kernel sources to cached, position-independent objects.

``find_cxx``/``find_cc`` pick the compilers, ``Builder`` turns (source, flags)
pairs into object paths through the :class:`~pytest_orcjit.cache.ObjectCache`,
one at a time (``compile``) or all at once on a thread pool that is shut down
before ``compile_many`` returns, so no thread outlives the compile step (the
test run forks afterwards). Usable without pytest::

    builder = Builder(Compiler.probe(find_cxx()), cache_dir=".objcache")
    lib.add(builder.compile("kernels/add.cc", ["-O2"]))
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from . import pch
from .cache import CacheWarning, ObjectCache
from .cuda import CudaToolchain
from .toolchain import Compiler, CompilerNotFound, find_cc, find_cxx

DEFAULT_STD = "c++20"
"""TVM-FFI exports written as lambdas (``TVM_FFI_DLL_EXPORT_TYPED_FUNC``) need C++20."""

C_SUFFIXES = (".c",)
CXX_SUFFIXES = (".cc", ".cpp", ".cxx", ".c++", ".C")
CUDA_SUFFIXES = (".cu",)
OBJECT_SUFFIXES = (".o",)
"""Objects listed as sources are used as they are, without compiling."""


class CompileError(Exception):
    """A source failed to compile; ``diagnostics`` holds the compiler's output."""

    def __init__(
        self, source: Path, command: Sequence[str], diagnostics: str, what: str | None = None
    ) -> None:
        """``what`` names the source in the message where its path alone would not (source text)."""
        self.source, self.command, self.diagnostics = source, list(command), diagnostics
        self.what = what
        super().__init__(f"compiling {what or source} failed:\n{diagnostics}")


def include_flags() -> list[str]:
    """``-I`` flags for the tvm-ffi and dlpack headers of the installed tvm-ffi."""
    from tvm_ffi import libinfo

    dirs = dict.fromkeys([libinfo.find_include_path(), libinfo.find_dlpack_include_path()])
    return [f"-I{folder}" for folder in dirs]


def tvm_ffi_version() -> str:
    """The installed apache-tvm-ffi version (part of every cache key)."""
    try:
        return metadata.version("apache-tvm-ffi")
    except metadata.PackageNotFoundError:
        return "unknown"


LANGUAGE_SUFFIX = {"c": ".c", "c++": ".cc", "cuda": ".cu"}
"""The suffix ``orcjit_compile`` gives source text of each language."""


def language_of(source: Path) -> str:
    """``"c"``, ``"c++"``, ``"cuda"`` or ``"object"`` from the suffix; ValueError for others."""
    if source.suffix in C_SUFFIXES:
        return "c"
    if source.suffix in CXX_SUFFIXES:
        return "c++"
    if source.suffix in CUDA_SUFFIXES:
        return "cuda"
    if source.suffix in OBJECT_SUFFIXES:
        return "object"
    known = ", ".join((*C_SUFFIXES, *CXX_SUFFIXES, *CUDA_SUFFIXES, *OBJECT_SUFFIXES))
    raise ValueError(f"{source}: unknown source kind (expected one of {known})")


def openmp_runtime(compiler: Compiler, flags: Iterable[str]) -> str | None:
    """The OpenMP runtime library (``"omp"``, ``"gomp"``) that ``flags`` make objects call.

    ``-fopenmp`` calls the compiler's own: libomp for clang, libgomp for gcc
    (libiomp5 for Intel's); ``-fopenmp=libNAME`` names it; the last of these
    and ``-fno-openmp`` wins. None when no runtime is needed (``-fopenmp-simd``).
    """
    runtime = None
    for flag in flags:
        if flag == "-fopenmp":
            runtime = "gomp"
            if "Intel" in compiler.identity:
                runtime = "iomp5"
            elif "clang" in compiler.identity:
                runtime = "omp"
        elif flag.startswith("-fopenmp=lib"):
            runtime = flag.removeprefix("-fopenmp=lib")
        elif flag == "-fno-openmp":
            runtime = None
    return runtime


@dataclass(frozen=True)
class Unit:
    """One compile: an absolute source path and the flags added for it."""

    source: Path
    flags: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What became of a unit: an object path, or the compile error."""

    object: Path | None = None
    error: CompileError | None = None
    reused: bool = False
    """Found in the cache (no compiler ran)."""
    built: bool = False
    """Compiled in this call."""
    notes: list[str] = field(default_factory=list)


@dataclass
class Stats:
    """What a run compiled, reused and failed to compile, for the terminal summary.

    Objects are counted by their cache path (failures by source and flags), so
    that adding up the stats of processes that share a cache (pytest-xdist
    workers, forked tests) counts each object once: one compiled by a worker
    and reused by another counts as compiled.
    """

    compiled: set[str] = field(default_factory=set)
    reused: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    seconds: float = 0.0

    def add(self, other: Stats) -> None:
        self.compiled |= other.compiled
        self.reused |= other.reused
        self.failed |= other.failed
        self.seconds = max(self.seconds, other.seconds)  # parallel workers: the longest

    def counts(self) -> tuple[int, int, int]:
        """(compiled, reused, failed), each object once."""
        return len(self.compiled), len(self.reused - self.compiled), len(self.failed)

    def to_json(self) -> dict[str, object]:
        return {key: sorted(getattr(self, key)) for key in ("compiled", "reused", "failed")} | {
            "seconds": self.seconds
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        compiled, reused, failed = (
            set(data.get(key) or ()) for key in ("compiled", "reused", "failed")
        )
        return cls(compiled, reused, failed, float(data.get("seconds") or 0.0))


class Builder:
    """Compiles units through an object cache with fixed base flags."""

    def __init__(
        self,
        cxx: Compiler,
        cache_dir: str | os.PathLike[str],
        *,
        cc: Compiler | None = None,
        std: str = DEFAULT_STD,
        cflags: Sequence[str] = (),
        cuda: CudaToolchain | None = None,
        use_pch: bool = True,
    ) -> None:
        """``use_pch``: compile eligible C++ sources with a PCH of the tvm-ffi headers (pch.py)."""
        self.cxx, self.cc = cxx, cc or cxx
        self.cache = ObjectCache(cache_dir)
        self.base = [*include_flags(), "-fPIC", *cflags]
        self.std = std
        self.cuda = cuda or CudaToolchain()
        self.pch = pch.PrecompiledHeaders(self.cache) if use_pch else None
        self._shared_fronts: set[tuple[str, ...]] = set()
        """C++ command fronts (compiler, -std, flags) that two sources of a batch share."""
        self._spare: dict[tuple[str, ...], int] = {}
        """Per shared front, how many sources may still compile without its PCH while it builds."""
        self._spare_lock = threading.Lock()
        self.stats = Stats()
        self._tvm_ffi = tvm_ffi_version()
        self.post_compile: Callable[[Unit, Path], None] | None = None
        """Runs on each C/C++ object just compiled, before it enters the cache (coverage.py)."""
        self.post_compile_key = ""
        """What ``post_compile`` does, in every cache key: its objects are cached apart."""
        self.on_object: Callable[[Path], None] | None = None
        """Told of every object compiled or reused (coverage.py lists them for its report)."""

    def compile(self, source: str | os.PathLike[str], flags: Sequence[str] = ()) -> Path:
        """Compile one source (cached) and return the object path; raise CompileError."""
        unit = Unit(Path(source).resolve(), tuple(flags))
        outcome = self._run(unit)
        self._count({unit: outcome})
        self.cache.save_hashes()
        for note in outcome.notes:
            warnings.warn(note, CacheWarning, stacklevel=2)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.object is not None
        return outcome.object

    def compile_text(self, text: str, flags: Sequence[str] = (), language: str = "c++") -> Path:
        """Compile source text (stored in the cache under its hash)."""
        if language not in LANGUAGE_SUFFIX:
            known = ", ".join(repr(name) for name in LANGUAGE_SUFFIX)
            raise ValueError(f"unknown language {language!r}: one of {known}")
        suffix = LANGUAGE_SUFFIX[language]
        source = self.cache.write_source(text, suffix)
        try:
            return self.compile(source, flags)
        except CompileError as err:
            what = f"the {language} source text given to orcjit_compile (kept as {source})"
            raise CompileError(source, err.command, err.diagnostics, what) from None

    def compile_many(self, units: Iterable[Unit], jobs: int) -> dict[Unit, Outcome]:
        """Compile distinct units on ``jobs`` threads; every thread has ended on return."""
        todo = self._pch_first(list(dict.fromkeys(units)), jobs)
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="orcjit-cc") as pool:
            outcomes = dict(zip(todo, pool.map(self._run, todo)))
        if todo:
            self.stats.seconds += time.monotonic() - start
        self._count(outcomes)
        self.cache.save_hashes()
        return outcomes

    def _pch_first(self, units: list[Unit], jobs: int = 1) -> list[Unit]:
        """``units`` reordered so that a PCH is built while sources that need none compile.

        Notes which flags at least two eligible sources share: only those get a
        PCH built (pch.py). The first source of each such group comes first,
        then the sources that need no PCH, then the rest. A PCH takes about as
        long as a plain compile: while it builds, each other job may compile
        one source of its group without it, where the group has more sources
        than jobs (so that the PCH still serves more than one round).
        """
        if self.pch is None:
            return units
        groups: dict[tuple[str, ...], list[Unit]] = {}
        for unit in units:
            if language_of(unit.source) == "c++" and pch.eligible(unit.source):
                groups.setdefault(tuple(self._pch_front(unit)[0]), []).append(unit)
        shared = {front: group for front, group in groups.items() if len(group) > 1}
        self._shared_fronts |= set(shared)
        for front, group in shared.items():
            self._spare[front] = max(0, min(jobs - 1, len(group) - jobs))
        leaders = [group[0] for group in shared.values()]
        grouped = {unit for group in shared.values() for unit in group}
        others = [unit for unit in units if unit not in grouped]
        rest = [unit for unit in units if unit in grouped and unit not in leaders]
        return leaders + others + rest

    def _pch_front(self, unit: Unit) -> tuple[list[str], list[str]]:
        """The command front a C++ unit's PCH is built with, and the unit's own macros."""
        flags, macros = pch.split_macros(unit.flags)
        return [*self.cxx.command, f"-std={self.std}", *self.base, *flags], macros

    def command(self, unit: Unit, output: Path) -> list[str]:
        """The full compiler command for ``unit`` (its depfile is ``output`` + ``.d``), with the
        PCH where there is one."""
        return self._command(unit, output, self._pch_flags(unit))

    def _pch_flags(self, unit: Unit, spare: bool = False) -> list[str]:
        """The flags that read the PCH for ``unit``, building it first for a shared front.

        With ``spare``, none where the PCH is being built and the unit may
        compile without it meanwhile (``_pch_first``): the job would otherwise
        wait for the PCH.
        """
        if self.pch is None or language_of(unit.source) != "c++" or not pch.eligible(unit.source):
            return []
        front, macros = self._pch_front(unit)
        key = tuple(front)
        if spare and self.pch.building(self.cxx, front, self._tvm_ffi):
            with self._spare_lock:
                if self._spare.get(key, 0) > 0:
                    self._spare[key] -= 1
                    return []
        build = key in self._shared_fronts
        return self.pch.flags(self.cxx, front, self._tvm_ffi, build, macros)

    def _command(self, unit: Unit, output: Path, pch_flags: Sequence[str] = ()) -> list[str]:
        """The compiler command for ``unit``; the cache key of its object is this command
        without ``pch_flags``: a PCH changes how fast a source compiles, not what to."""
        lang = language_of(unit.source)
        if lang == "cuda":
            front = [*self.cuda.compiler().command, f"-std={self.std}", "-Xcompiler", "-fPIC",
                     *include_flags(), *self.cuda.flags(), *unit.flags]  # fmt: skip
        elif lang == "c":
            as_c = ["-x", "c"] if self.cc.command == self.cxx.command else []
            front = [*self.cc.command, *as_c, *self.base, *unit.flags]
        else:
            front = [*self.cxx.command, f"-std={self.std}", *self.base, *unit.flags, *pch_flags]
        return [*front, "-MD", "-MF", f"{output}.d", "-c", str(unit.source), "-o", str(output)]

    def _count(self, outcomes: dict[Unit, Outcome]) -> None:
        for unit, outcome in outcomes.items():
            instrumented = language_of(unit.source) in ("c", "c++")
            if self.on_object is not None and outcome.object is not None and instrumented:
                self.on_object(outcome.object)
            if outcome.error is not None:
                self.stats.failed.add(shlex.join([str(unit.source), *unit.flags]))
            elif outcome.built:
                self.stats.compiled.add(str(outcome.object))
            elif outcome.reused:
                self.stats.reused.add(str(outcome.object))

    def _run(self, unit: Unit) -> Outcome:
        language = language_of(unit.source)
        if language == "object":
            return Outcome(object=unit.source)
        try:
            compiler = {"c": self.cc, "c++": self.cxx}.get(language) or self.cuda.compiler()
        except CompilerNotFound as err:
            return Outcome(error=CompileError(unit.source, [], str(err)))
        key = [*self._command(unit, Path("OUT")), compiler.identity, self._tvm_ffi]
        if self.post_compile_key and language in ("c", "c++"):
            key.append(self.post_compile_key)
        try:
            entry = self.cache.get(key, lambda out: self._compile_to(unit, out))
        except CompileError as err:
            return Outcome(error=err)
        built = not entry.reused
        return Outcome(object=entry.object, reused=entry.reused, built=built, notes=entry.notes)

    def _compile_to(self, unit: Unit, output: Path) -> list[Path]:
        argv = self._command(unit, output, self._pch_flags(unit, spare=True))
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as err:
            raise CompileError(unit.source, argv, str(err)) from err
        if done.returncode != 0:
            raise CompileError(unit.source, argv, (done.stdout + done.stderr).strip())
        if self.post_compile is not None and language_of(unit.source) in ("c", "c++"):
            self.post_compile(unit, output)
        return parse_depfile(Path(f"{output}.d").read_text())


def parse_depfile(text: str) -> list[Path]:
    """The prerequisites of a make-style depfile (``out.o: a.cc b.h \\``)."""
    joined = text.replace("\\\n", " ")
    _, _, prerequisites = joined.partition(": ")
    words = re.findall(r"(?:\\.|[^\s\\])+", prerequisites)
    paths = [re.sub(r"\\(.)", r"\1", word).replace("$$", "$") for word in words]
    folders: dict[str, str] = {}  # most headers share a few folders: each resolved once
    resolved = []
    for path in dict.fromkeys(paths):
        head, name = os.path.split(os.path.abspath(path))
        if head not in folders:
            folders[head] = os.path.realpath(head)
        full = os.path.join(folders[head], name)
        resolved.append(Path(os.path.realpath(full) if os.path.islink(full) else full))
    return resolved


__all__ = [
    "DEFAULT_STD",
    "Builder",
    "CompileError",
    "Compiler",
    "CompilerNotFound",
    "CudaToolchain",
    "Outcome",
    "Stats",
    "Unit",
    "find_cc",
    "find_cxx",
    "openmp_runtime",
]
