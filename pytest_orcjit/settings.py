"""The plugin's settings: options, their ini twins, and how each value is chosen.

Precedence, resolved here and nowhere else: the ``orcjit`` marker (closest to
the test first: function, then class, then module) > command line > ini file >
default. Session settings are resolved once at configure time; per-test
settings layer the marker on top of them. Every validator names where the bad
value came from.
"""

from __future__ import annotations

import glob
import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .compiler import DEFAULT_STD, language_of

HELP_SOURCES = (
    "globs of C/C++ kernel sources (relative to the rootdir) whose objects every orcjit_lib "
    "holds, unless the test's orcjit marker names its own sources"
)
HELP_CXX = "C++ compiler (default: $CXX, else the newest clang++/clang++-NN on PATH, else g++)"
HELP_CC = "C compiler for .c sources (default: $CC, else the C twin of the C++ compiler)"
HELP_CFLAGS = "extra compiler flags for every source, one shell-quoted string (default: none)"
HELP_STD = f"-std= for C++ sources (default: {DEFAULT_STD}); C sources get no -std"
HELP_JOBS = "number of parallel compiles (default: number of CPUs)"
HELP_ISOLATION = (
    "fork: run each test that uses orcjit in a forked child (default); none: run in-process"
)
HELP_TIMEOUT = "kill a forked test after SECONDS and fail it (default: none; 0 = none)"
HELP_LIBS = (
    "shared libraries that kernels call (a BLAS, cudart), loaded into the process before "
    "linking: names found as -lNAME finds them (gomp, omp, m) or paths (default: none; "
    "-fopenmp in the flags loads the compiler's OpenMP runtime by itself)"
)
MARKER_HELP = (
    "orcjit(sources=[...], cflags=[...], defines={...}, libs=[...], timeout=None, "
    "isolation=None): the test's library holds exactly these sources (relative to the test "
    "file's directory), compiled with these extra flags; libs, timeout and isolation "
    "override --orcjit-libs, --orcjit-timeout and --orcjit-isolation"
)

MSG_INVALID = "orcjit: invalid {what} {value!r} from {origin}: {expected}"
MSG_EMPTY_GLOB = "orcjit: {origin} glob {glob!r} matches no file (relative to {base})"
MSG_BAD_SOURCE = "orcjit: {origin}: {error}"
MSG_DIRECTORY = (
    "orcjit: {origin} names the directory {glob!r}, not sources; give test paths before "
    "--orcjit-sources or write --orcjit-sources=GLOB"
)
MSG_MARKER_ARGS = "orcjit: the orcjit marker on {where} takes keyword arguments only ({names})"
MSG_LIBRARY = "orcjit: cannot load the shared library {name!r} from {origin}: {error}"

ISOLATIONS = ("fork", "none")
MARKER_KEYS = ("sources", "cflags", "defines", "libs", "timeout", "isolation")
ORCJIT_FIXTURES = frozenset({"orcjit_session", "orcjit_lib", "orcjit_compile", "orcjit_objects"})

# (name, help, ini type): --orcjit-<name> on the command line, orcjit_<name> in the ini file.
OPTIONS = (
    ("sources", HELP_SOURCES, "linelist"),
    ("cxx", HELP_CXX, "string"),
    ("cc", HELP_CC, "string"),
    ("cflags", HELP_CFLAGS, "string"),
    ("std", HELP_STD, "string"),
    ("jobs", HELP_JOBS, "string"),
    ("isolation", HELP_ISOLATION, "string"),
    ("timeout", HELP_TIMEOUT, "string"),
    ("libs", HELP_LIBS, "args"),
)


def addoptions(parser: pytest.Parser) -> None:
    """Register every option and its ini twin, sharing one help text."""
    group = parser.getgroup("orcjit", "compile kernels and load them with ORC JIT")
    for name, text, ini_type in OPTIONS:
        flag = f"--orcjit-{name}"
        if name in ("sources", "libs"):
            metavar = "GLOB" if name == "sources" else "NAME"
            group.addoption(flag, dest=f"orcjit_{name}", nargs="+", action="extend",
                            metavar=metavar, help=text)  # fmt: skip
        elif name == "isolation":
            group.addoption(flag, dest="orcjit_isolation", choices=ISOLATIONS, help=text)
        else:
            metavar = {"jobs": "N", "timeout": "SECONDS", "cflags": "FLAGS"}.get(name, name.upper())
            group.addoption(flag, dest=f"orcjit_{name}", metavar=metavar, help=text)
        parser.addini(f"orcjit_{name}", text, type=ini_type, default=None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Picked:
    """A raw setting and where it came from ("--orcjit-jobs", "ini orcjit_jobs", ...)."""

    value: Any
    origin: str


@dataclass(frozen=True)
class SessionSettings:
    """Settings for the whole run (command line > ini > default)."""

    sources: tuple[Path, ...]
    cxx: Picked
    cc: Picked
    cflags: tuple[str, ...]
    std: str
    jobs: int
    isolation: str
    timeout: float | None
    libs: Picked
    """The shared libraries to load (a tuple of names and paths) and where they were given."""

    @property
    def configured(self) -> bool:
        """Sources or a compiler were configured: check the compiler up front.

        $CXX alone does not count: it is often set for other reasons.
        """
        return bool(self.sources) or self.cxx.origin not in ("default", "$CXX")


@dataclass(frozen=True)
class ItemSettings:
    """One test's settings: the session's with its orcjit marker layered on top."""

    uses_orcjit: bool
    isolation: str
    timeout: float | None
    sources: tuple[Path, ...]
    flags: tuple[str, ...]
    libs: Picked


def pick(config: pytest.Config, name: str) -> Picked:
    """The command-line value, else the ini value, else None from "default"."""
    value = config.getoption(f"orcjit_{name}")
    if value not in (None, [], ""):
        return Picked(value, f"--orcjit-{name}")
    value = config.getini(f"orcjit_{name}")
    if value not in (None, [], ""):
        return Picked(value, f"ini orcjit_{name}")
    return Picked(None, "default")


def session_settings(config: pytest.Config) -> SessionSettings:
    """Resolve and validate the session settings; raise pytest.UsageError."""
    try:
        return _session_settings(config)
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None


def _session_settings(config: pytest.Config) -> SessionSettings:
    sources = pick(config, "sources")
    cxx, cc = pick(config, "cxx"), pick(config, "cc")
    if cxx.value is None and os.environ.get("CXX"):
        cxx = Picked(os.environ["CXX"], "$CXX")
    if cc.value is None and os.environ.get("CC"):
        cc = Picked(os.environ["CC"], "$CC")
    std = pick(config, "std")
    return SessionSettings(
        sources=expand(sources.value or (), config.rootpath, sources.origin),
        cxx=cxx,
        cc=cc,
        cflags=split_flags(pick(config, "cflags"), "flags"),
        std=_check(std, std.value or DEFAULT_STD, "-std", lambda s: s and " " not in s, "a name"),
        jobs=parse_jobs(pick(config, "jobs")),
        isolation=parse_isolation(pick(config, "isolation"), "fork"),
        timeout=parse_timeout(pick(config, "timeout")),
        libs=parse_libs(pick(config, "libs")),
    )


def item_settings(item: pytest.Item, session: SessionSettings) -> ItemSettings:
    """Layer the item's orcjit markers (closest first) on the session settings.

    Raises ValueError naming the marker's node for a bad marker argument.
    """
    found: dict[str, Picked] = {}
    for node, mark in item.iter_markers_with_node("orcjit"):
        where = f"marker on {node.nodeid or node.name}"
        if mark.args:
            raise ValueError(
                MSG_MARKER_ARGS.format(where=node.nodeid, names=", ".join(MARKER_KEYS))
            )
        for key, value in mark.kwargs.items():
            if key not in MARKER_KEYS:
                raise _invalid("keyword", key, where, f"one of {', '.join(MARKER_KEYS)}")
            found.setdefault(key, Picked(value, where))
    fixtures = set(getattr(item, "fixturenames", ()))
    uses = bool(fixtures & ORCJIT_FIXTURES) or bool(found)
    default_isolation = session.isolation if uses else "none"
    sources = session.sources
    if "sources" in found:
        picked = found["sources"]
        given = [picked.value] if isinstance(picked.value, (str, os.PathLike)) else picked.value
        sources = expand(given, item.path.parent, picked.origin)
    flags = split_flags(found.get("cflags", Picked(None, "")), "cflags")
    if "defines" in found:
        flags += define_flags(found["defines"])
    return ItemSettings(
        uses_orcjit=uses,
        isolation=parse_isolation(found.get("isolation", Picked(None, "")), default_isolation),
        timeout=parse_timeout(found["timeout"]) if "timeout" in found else session.timeout,
        sources=sources,
        flags=flags,
        libs=parse_libs(found["libs"]) if "libs" in found else session.libs,
    )


# Validators: each turns a Picked into a value or raises ValueError naming its origin.


def expand(globs: Iterable[Any], base: Path, origin: str) -> tuple[Path, ...]:
    """Expand globs (relative to ``base``); every glob must match a known source kind."""
    if isinstance(globs, (str, bytes)) or not isinstance(globs, Iterable):
        raise _invalid("sources", globs, origin, "a list of paths or globs")
    found: dict[Path, None] = {}
    for pattern in globs:
        full = os.path.join(base, os.fspath(pattern))
        matches = sorted(glob.glob(full, recursive=True)) if glob.has_magic(full) else [full]
        matches = [match for match in matches if os.path.isfile(match)]
        if not matches and os.path.isdir(full):
            raise ValueError(MSG_DIRECTORY.format(origin=origin, glob=str(pattern)))
        if not matches:
            raise ValueError(MSG_EMPTY_GLOB.format(origin=origin, glob=str(pattern), base=base))
        for match in matches:
            path = Path(match).resolve()
            try:
                language_of(path)
            except ValueError as err:
                raise ValueError(MSG_BAD_SOURCE.format(origin=origin, error=err)) from None
            found[path] = None
    return tuple(found)


def split_flags(picked: Picked, what: str) -> tuple[str, ...]:
    """Flags given as one shell-quoted string or as a list of strings."""
    if picked.value is None:
        return ()
    if isinstance(picked.value, str):
        try:
            return tuple(shlex.split(picked.value))
        except ValueError as err:
            raise _invalid(what, picked.value, picked.origin, err) from None
    if isinstance(picked.value, Sequence) and all(isinstance(f, str) for f in picked.value):
        return tuple(picked.value)
    raise _invalid(what, picked.value, picked.origin, "a string or a list of strings")


def define_flags(picked: Picked) -> tuple[str, ...]:
    """``{"N": 4, "FAST": None}`` -> ``("-DN=4", "-DFAST")``."""
    if not isinstance(picked.value, dict):
        raise _invalid("defines", picked.value, picked.origin, "a dict")
    return tuple(
        f"-D{k}" if v is None or v is True else f"-D{k}={v}" for k, v in picked.value.items()
    )


def parse_libs(picked: Picked) -> Picked:
    """Library names or paths: one string or a list of them; a tuple, with its origin."""
    value = picked.value
    if value is None:
        return Picked((), picked.origin)
    libs = [value] if isinstance(value, (str, os.PathLike)) else value
    if isinstance(libs, Sequence) and all(isinstance(lib, (str, os.PathLike)) for lib in libs):
        names = tuple(os.fspath(lib) for lib in libs)
        if all(names):
            return Picked(names, picked.origin)
    raise _invalid("libs", value, picked.origin, "a library name or path, or a list of them")


def parse_jobs(picked: Picked) -> int:
    if picked.value is None:
        return os.cpu_count() or 1
    return int(_check(picked, picked.value, "jobs", _positive_int, "a positive integer"))


def parse_isolation(picked: Picked, default: str) -> str:
    if picked.value is None:
        return default
    return str(_check(picked, picked.value, "isolation", lambda v: v in ISOLATIONS, "fork or none"))


def parse_timeout(picked: Picked) -> float | None:
    """Seconds as a number >= 0; None or 0 means no timeout."""
    if picked.value is None:
        return None
    seconds = float(_check(picked, picked.value, "timeout", _non_negative, "seconds >= 0"))
    return seconds or None


def _check(picked: Picked, value: Any, what: str, valid: Any, expected: str) -> Any:
    if not valid(value):
        raise _invalid(what, value, picked.origin, expected)
    return value


def _invalid(what: str, value: Any, origin: str, expected: object) -> ValueError:
    return ValueError(MSG_INVALID.format(what=what, value=value, origin=origin, expected=expected))


def _positive_int(value: Any) -> bool:
    try:
        return int(value) >= 1 and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False


def _non_negative(value: Any) -> bool:
    try:
        return float(value) >= 0 and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False
