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

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .cache import CacheWarning, ObjectCache

DEFAULT_STD = "c++20"
"""TVM-FFI exports written as lambdas (``TVM_FFI_DLL_EXPORT_TYPED_FUNC``) need C++20."""

C_SUFFIXES = (".c",)
CXX_SUFFIXES = (".cc", ".cpp", ".cxx", ".c++", ".C")
OBJECT_SUFFIXES = (".o",)
"""Objects listed as sources are used as they are, without compiling."""


class CompilerNotFound(Exception):
    """The chosen compiler cannot be run; the message says which and why."""


class CompileError(Exception):
    """A source failed to compile; ``diagnostics`` holds the compiler's output."""

    def __init__(
        self, source: Path, command: Sequence[str], diagnostics: str, what: str | None = None
    ) -> None:
        """``what`` names the source in the message where its path alone would not (source text)."""
        self.source, self.command, self.diagnostics = source, list(command), diagnostics
        super().__init__(f"compiling {what or source} failed:\n{diagnostics}")


@dataclass(frozen=True)
class Compiler:
    """A compiler command (``["ccache", "clang++"]`` is fine) and its identity."""

    command: tuple[str, ...]
    version: str
    """The first line of ``--version``, for reports."""
    identity: str
    """Resolved path and the full ``--version`` output: part of every cache key."""

    @classmethod
    def probe(cls, command: str | Sequence[str], state_dir: Path | None = None) -> Compiler:
        """Resolve ``command`` on PATH and read its version, or raise CompilerNotFound.

        With ``state_dir``, the version output is remembered there per resolved
        path, size and modification time, so a warm run starts no compiler.
        """
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        exe = shutil.which(argv[0]) if argv else None
        if exe is None:
            raise CompilerNotFound(f"{shlex.join(argv) or '(empty)'!r} is not found on PATH")
        real = os.path.realpath(exe)
        stat = os.stat(real)
        memo_key = f"{shlex.join([real, *argv[1:]])} {stat.st_size} {stat.st_mtime_ns}"
        memo = _read_json(state_dir / "compilers.json") if state_dir else {}
        output = memo.get(memo_key)
        if not isinstance(output, str):
            output = _version_output([exe, *argv[1:]])
            if state_dir is not None:
                memo[memo_key] = output
                ObjectCache(state_dir)._write_atomic(
                    state_dir / "compilers.json", json.dumps(memo).encode()
                )
        first = output.strip().splitlines()[0] if output.strip() else "unknown version"
        return cls((exe, *argv[1:]), first, f"{real}\n{output}")


def find_cxx(explicit: str | None = None) -> str:
    """The C++ compiler: ``explicit``, else ``$CXX``, else the newest clang++ on PATH, else g++."""
    if explicit:
        return explicit
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    ranked = sorted(_clangs_on_path(), key=lambda found: found[0])
    return ranked[-1][1] if ranked else "g++"


def find_cc(cxx: str, explicit: str | None = None) -> str:
    """The C compiler: ``explicit``, else ``$CC``, else the C twin of ``cxx``."""
    if explicit:
        return explicit
    if os.environ.get("CC"):
        return os.environ["CC"]
    argv = shlex.split(cxx)
    head, name = os.path.split(argv[-1])
    for cxx_part, c_part in (("clang++", "clang"), ("g++", "gcc"), ("c++", "cc")):
        twin = os.path.join(head, name.replace(cxx_part, c_part, 1))
        if cxx_part in name and shutil.which(twin):
            return shlex.join([*argv[:-1], twin])
    return cxx  # a C++ driver compiles C too, told so with -x c


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


def language_of(source: Path) -> str:
    """``"c"``, ``"c++"`` or ``"object"`` from the suffix; ValueError for others."""
    if source.suffix in C_SUFFIXES:
        return "c"
    if source.suffix in CXX_SUFFIXES:
        return "c++"
    if source.suffix in OBJECT_SUFFIXES:
        return "object"
    known = ", ".join((*C_SUFFIXES, *CXX_SUFFIXES, *OBJECT_SUFFIXES))
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
    """Counters for the terminal summary."""

    compiled: int = 0
    reused: int = 0
    failed: int = 0
    seconds: float = 0.0

    def add(self, other: Stats) -> None:
        self.compiled += other.compiled
        self.reused += other.reused
        self.failed += other.failed
        self.seconds = max(self.seconds, other.seconds)  # parallel workers: the longest


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
    ) -> None:
        self.cxx, self.cc = cxx, cc or cxx
        self.cache = ObjectCache(cache_dir)
        self.base = [*include_flags(), "-fPIC", *cflags]
        self.std = std
        self.stats = Stats()
        self._tvm_ffi = tvm_ffi_version()

    def compile(self, source: str | os.PathLike[str], flags: Sequence[str] = ()) -> Path:
        """Compile one source (cached) and return the object path; raise CompileError."""
        outcome = self._run(Unit(Path(source).resolve(), tuple(flags)))
        self._count([outcome])
        for note in outcome.notes:
            warnings.warn(note, CacheWarning, stacklevel=2)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.object is not None
        return outcome.object

    def compile_text(self, text: str, flags: Sequence[str] = (), language: str = "c++") -> Path:
        """Compile source text (stored in the cache under its hash)."""
        suffix = {"c": ".c", "c++": ".cc"}[language]
        source = self.cache.write_source(text, suffix)
        try:
            return self.compile(source, flags)
        except CompileError as err:
            what = f"the {language} source text given to orcjit_compile (kept as {source})"
            raise CompileError(source, err.command, err.diagnostics, what) from None

    def compile_many(self, units: Iterable[Unit], jobs: int) -> dict[Unit, Outcome]:
        """Compile distinct units on ``jobs`` threads; every thread has ended on return."""
        todo = list(dict.fromkeys(units))
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="orcjit-cc") as pool:
            outcomes = dict(zip(todo, pool.map(self._run, todo)))
        if todo:
            self.stats.seconds += time.monotonic() - start
        self._count(outcomes.values())
        return outcomes

    def command(self, unit: Unit, output: Path) -> list[str]:
        """The full compiler command for ``unit`` (its depfile is ``output`` + ``.d``)."""
        lang = language_of(unit.source)
        if lang == "c":
            as_c = ["-x", "c"] if self.cc.command == self.cxx.command else []
            front = [*self.cc.command, *as_c]
        else:
            front = [*self.cxx.command, f"-std={self.std}"]
        depfile = f"{output}.d"
        return [*front, *self.base, *unit.flags, "-MD", "-MF", depfile, "-c", str(unit.source),
                "-o", str(output)]  # fmt: skip

    def _count(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.error is not None:
                self.stats.failed += 1
            self.stats.compiled += outcome.built
            self.stats.reused += outcome.reused

    def _run(self, unit: Unit) -> Outcome:
        if language_of(unit.source) == "object":
            return Outcome(object=unit.source)
        compiler = self.cc if language_of(unit.source) == "c" else self.cxx
        key = [*self.command(unit, Path("OUT")), compiler.identity, self._tvm_ffi]
        try:
            entry = self.cache.get(key, lambda out: self._compile_to(unit, out))
        except CompileError as err:
            return Outcome(error=err)
        built = not entry.reused
        return Outcome(object=entry.object, reused=entry.reused, built=built, notes=entry.notes)

    def _compile_to(self, unit: Unit, output: Path) -> list[Path]:
        argv = self.command(unit, output)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as err:
            raise CompileError(unit.source, argv, str(err)) from err
        if done.returncode != 0:
            raise CompileError(unit.source, argv, (done.stdout + done.stderr).strip())
        return parse_depfile(Path(f"{output}.d").read_text())


def parse_depfile(text: str) -> list[Path]:
    """The prerequisites of a make-style depfile (``out.o: a.cc b.h \\``)."""
    joined = text.replace("\\\n", " ")
    _, _, prerequisites = joined.partition(": ")
    words = re.findall(r"(?:\\.|[^\s\\])+", prerequisites)
    paths = [re.sub(r"\\(.)", r"\1", word).replace("$$", "$") for word in words]
    return [Path(path).resolve() for path in dict.fromkeys(paths)]


def _clangs_on_path() -> Iterable[tuple[int, str]]:
    """(major version, name) of every ``clang++``/``clang++-NN`` on PATH."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        with contextlib.suppress(OSError), os.scandir(folder or ".") as entries:
            for entry in entries:
                match = re.fullmatch(r"clang\+\+(?:-(\d+))?", entry.name)
                if match and os.access(entry.path, os.X_OK):
                    # a bare clang++ usually links to .../llvm-NN/bin/clang
                    target = re.search(r"(?:llvm|clang)-(\d+)", os.path.realpath(entry.path))
                    major = match.group(1) or (target.group(1) if target else "0")
                    yield int(major), entry.name


def _version_output(argv: list[str]) -> str:
    try:
        done = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CompilerNotFound(f"{shlex.join(argv)!r} cannot be run: {err}") from err
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise CompilerNotFound(f"'{shlex.join(argv)} --version' exited {done.returncode}: {detail}")
    return done.stdout


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


__all__ = [
    "DEFAULT_STD",
    "Builder",
    "CompileError",
    "Compiler",
    "CompilerNotFound",
    "Outcome",
    "Stats",
    "Unit",
    "find_cc",
    "find_cxx",
    "openmp_runtime",
]
