"""The plugin's settings: options, their ini twins, and how each value is chosen.

Precedence, resolved here and nowhere else: the ``orcjit`` marker (closest to
the test first: function, then class, then module) > command line > ini file >
default. Session settings are resolved once at configure time; per-test
settings layer the marker on top of them. The validators, each naming where a
bad value came from, are in :mod:`pytest_orcjit.validators`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import sanitize
from .compiler import DEFAULT_STD
from .validators import (
    ISOLATIONS,
    PCH_MODES,
    Picked,
    check,
    define_flags,
    expand,
    invalid,
    parse_cuda_archs,
    parse_cuda_device,
    parse_isolation,
    parse_jobs,
    parse_libs,
    parse_pch,
    parse_timeout,
    split_flags,
)

HELP_SOURCES = (
    "globs of C/C++ kernel sources (relative to the rootdir) whose objects every orcjit_lib "
    "holds, unless the test's orcjit marker names its own sources"
)
HELP_CXX = "C++ compiler (default: $CXX, else the newest clang++/clang++-NN on PATH, else g++)"
HELP_CC = "C compiler for .c sources (default: $CC, else the C twin of the C++ compiler)"
HELP_CFLAGS = (
    "extra compiler flags for every source: one shell-quoted string, or a list in pyproject.toml "
    "(default: none)"
)
HELP_STD = f"-std= for C++ sources (default: {DEFAULT_STD}); C sources get no -std"
HELP_JOBS = "number of parallel compiles (default: number of CPUs)"
HELP_ISOLATION = (
    "fork: run each test that uses orcjit in a forked child (default); none: run in-process"
)
HELP_TIMEOUT = "kill a forked test after SECONDS and fail it (default: none; 0 = none)"
HELP_NVCC = (
    "nvcc for .cu sources (default: $CUDA_HOME/bin/nvcc, else nvcc on PATH, else the "
    "nvidia-cuda-nvcc package's)"
)
HELP_NVCC_FLAGS = "extra nvcc flags for every .cu source, one shell-quoted string (default: none)"
HELP_CUDA_ARCH = (
    "CUDA architectures to compile .cu sources for, e.g. 90 or '80;90' (default: the GPU's own, "
    "else 75)"
)
HELP_LAUNCHER = (
    "a command that runs every compile, given the compiler command: sccache or ccache to share "
    "compiles across machines (default: none)"
)
HELP_PCH = (
    "auto: compile C++ sources that include the tvm-ffi headers first with a precompiled header "
    "of them (default); off: never"
)
HELP_CUDA_DEVICE = "the CUDA device index that the orcjit_cuda_device fixture gives (default: 0)"
HELP_LIBS = (
    "shared libraries that kernels call (a BLAS, cudart), loaded into the process before "
    "linking: names found as -lNAME finds them (gomp, omp, m) or paths (default: none; "
    "-fopenmp in the flags loads the compiler's OpenMP runtime by itself)"
)
HELP_PERF_MAP = (
    "write /tmp/perf-<pid>.map, which names JIT functions in perf report, in the pytest process "
    "and each forked child (sets PYTEST_ORCJIT_PERF_MAP=1; default: off)"
)
HELP_PRELINK = (
    "the fork server links each set of objects and runs their static constructors once; forked "
    "tests take a copy-on-write copy (default: on; marker own_load=True opts a test out)"
)
HELP_LEARN_IMPORTS = (
    "modules from outside the rootdir that a forked test imports are imported into the pytest "
    "process after it, so later tests' children start with them imported (default: on)"
)
PERF_MAP_ENV = "PYTEST_ORCJIT_PERF_MAP"
"""Set to 1 before a session is created, the native core writes a perf map (docs/debuggers.md)."""
MARKER_HELP = (
    "orcjit(sources=[...], cflags=[...], defines={...}, libs=[...], timeout=None, "
    "isolation=None, sanitize=None, own_load=False): the test's library holds exactly these "
    "sources (relative to the test file's directory), compiled with these extra flags; libs, "
    "timeout, isolation and sanitize override --orcjit-libs, --orcjit-timeout, --orcjit-isolation "
    "and --orcjit-sanitize; own_load=True: a forked test links its objects and runs their static "
    "constructors itself, not once in the fork server"
)

MSG_SPACE_FORM = (
    "orcjit: write {flag}={value} (with '='): pytest takes a separate value that names an "
    "existing path for a test path when it picks the rootdir, before this plugin is loaded"
)
MSG_TIMEOUT_IN_PROCESS = (
    "orcjit: {origin} sets a timeout, but tests run in-process ({isolation}): only forked "
    "tests are timed out"
)
MSG_MARKER_ARGS = "orcjit: the orcjit marker on {where} takes keyword arguments only ({names})"
MSG_LIBRARY = "orcjit: cannot load the shared library {name!r} from {origin}: {error}"

CHOICES = {"isolation": ISOLATIONS, "pch": PCH_MODES}
"""Options whose command-line values argparse checks itself."""
PATH_OPTIONS = ("cxx", "cc", "nvcc", "launcher")
"""Options whose value may be a path (which must follow '=' on the command line)."""
MARKER_KEYS = (
    "sources",
    "cflags",
    "defines",
    "libs",
    "timeout",
    "isolation",
    "sanitize",
    "own_load",
)
ORCJIT_FIXTURES = frozenset(
    {"orcjit_session", "orcjit_lib", "orcjit_compile", "orcjit_objects", "orcjit_cuda_device"}
)

# (name, help, ini type): --orcjit-<name> on the command line, orcjit_<name> in the ini file.
# Flags are "args": a shell-quoted string in an ini file, a list of strings in pyproject.toml.
OPTIONS = (
    ("sources", HELP_SOURCES, "linelist"),
    ("cxx", HELP_CXX, "string"),
    ("cc", HELP_CC, "string"),
    ("cflags", HELP_CFLAGS, "args"),
    ("std", HELP_STD, "string"),
    ("jobs", HELP_JOBS, "string"),
    ("isolation", HELP_ISOLATION, "string"),
    ("timeout", HELP_TIMEOUT, "string"),
    ("libs", HELP_LIBS, "args"),
    ("launcher", HELP_LAUNCHER, "args"),
    ("pch", HELP_PCH, "string"),
    ("nvcc", HELP_NVCC, "string"),
    ("nvcc_flags", HELP_NVCC_FLAGS, "args"),
    ("cuda_arch", HELP_CUDA_ARCH, "string"),
    ("cuda_device", HELP_CUDA_DEVICE, "string"),
    ("perf_map", HELP_PERF_MAP, "bool"),
    ("prelink", HELP_PRELINK, "bool"),
    ("learn_imports", HELP_LEARN_IMPORTS, "bool"),
    ("sanitize", sanitize.HELP_SANITIZE, "string"),
)


def addoptions(parser: pytest.Parser) -> None:
    """Register every option and its ini twin, sharing one help text."""
    group = parser.getgroup("orcjit", "compile kernels and load them with ORC JIT")
    for name, text, ini_type in OPTIONS:
        flag = cli_flag(name)
        if name in ("sources", "libs"):
            metavar = "GLOB" if name == "sources" else "NAME"
            group.addoption(flag, dest=f"orcjit_{name}", nargs="+", action="extend",
                            metavar=metavar, help=text)  # fmt: skip
        elif ini_type == "bool":
            group.addoption(flag, dest=f"orcjit_{name}", action=argparse.BooleanOptionalAction,
                            default=None, help=text)  # fmt: skip
        elif name in CHOICES:
            group.addoption(flag, dest=f"orcjit_{name}", choices=CHOICES[name], help=text)
        else:
            metavars = {"jobs": "N", "timeout": "SECONDS", "cflags": "FLAGS", "nvcc_flags": "FLAGS"}
            metavar = metavars.get(name, name.upper())
            group.addoption(flag, dest=f"orcjit_{name}", metavar=metavar, help=text)
        parser.addini(f"orcjit_{name}", text, type=ini_type, default=None)  # type: ignore[arg-type]


def cli_flag(name: str) -> str:
    """``nvcc_flags`` -> ``--orcjit-nvcc-flags``."""
    return "--orcjit-" + name.replace("_", "-")


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
    launcher: tuple[str, ...]
    pch: bool
    nvcc: Picked
    nvcc_flags: tuple[str, ...]
    cuda_archs: tuple[str, ...] | None
    cuda_device: int
    perf_map: bool
    prelink: bool
    learn_imports: bool
    sanitize: tuple[str, ...]
    """The sanitizers kernels are compiled with (``pytest_orcjit.sanitize``)."""

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
    sanitize: Picked
    """The sanitizers of the test's kernels, and where they were asked for."""
    own_load: bool = True
    """Whether a forked test links its library itself rather than take the fork server's
    (``--orcjit-prelink``)."""


def pick(config: pytest.Config, name: str) -> Picked:
    """The command-line value, else the ini value, else None from "default"."""
    value = config.getoption(f"orcjit_{name}")
    if value not in (None, [], ""):
        return Picked(value, cli_flag(name))
    value = config.getini(f"orcjit_{name}")
    if value not in (None, [], ""):
        return Picked(value, f"ini orcjit_{name}")
    return Picked(None, "default")


def session_settings(config: pytest.Config) -> SessionSettings:
    """Resolve and validate the session settings; raise pytest.UsageError."""
    check_space_form(config.invocation_params.args)
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
        std=check(std, std.value or DEFAULT_STD, "-std", lambda s: s and " " not in s, "a name"),
        jobs=parse_jobs(pick(config, "jobs")),
        isolation=parse_isolation(pick(config, "isolation"), "fork"),
        timeout=parse_timeout(pick(config, "timeout")),
        libs=parse_libs(pick(config, "libs")),
        launcher=split_flags(pick(config, "launcher"), "launcher"),
        pch=parse_pch(pick(config, "pch")),
        nvcc=pick(config, "nvcc"),
        nvcc_flags=split_flags(pick(config, "nvcc_flags"), "nvcc flags"),
        cuda_archs=parse_cuda_archs(pick(config, "cuda_arch")),
        cuda_device=parse_cuda_device(pick(config, "cuda_device")),
        perf_map=bool(pick(config, "perf_map").value),
        prelink=pick(config, "prelink").value is not False,
        learn_imports=pick(config, "learn_imports").value is not False,
        sanitize=sanitize.parse(pick(config, "sanitize")),
    )


def check_space_form(args: Sequence[str]) -> None:
    """Raise UsageError for ``--orcjit-cxx /path``: write ``--orcjit-cxx=/path``.

    pytest picks the rootdir from the command line's test paths before plugins
    load, and takes such a value, which names an existing file, for one.
    """
    takes_path = {cli_flag(name) for name in PATH_OPTIONS}
    for flag, value in zip(args, args[1:]):
        if flag in takes_path and not value.startswith("-") and os.path.exists(value):
            raise pytest.UsageError(MSG_SPACE_FORM.format(flag=flag, value=value))


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
                raise invalid("keyword", key, where, f"one of {', '.join(MARKER_KEYS)}")
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
        sanitize=item_sanitizers(found.get("sanitize"), session.sanitize, config_origin(item)),
        own_load=_own_load(found.get("own_load", Picked(not session.prelink, ""))),
    )


def config_origin(item: pytest.Item) -> str:
    """Where the session's sanitizers come from (--orcjit-sanitize, ini orcjit_sanitize)."""
    return pick(item.config, "sanitize").origin


def item_sanitizers(marker: Picked | None, session: tuple[str, ...], origin: str) -> Picked:
    """The marker's ``sanitize=`` if it has one, else the session's, with where they came from."""
    if marker is None:
        return Picked(session, origin)
    return Picked(sanitize.parse(marker), marker.origin)


def _own_load(picked: Picked) -> bool:
    """The marker's ``own_load``: True or False."""
    is_bool = lambda value: isinstance(value, bool)  # noqa: E731
    return bool(check(picked, picked.value, "own_load", is_bool, "True or False"))
