"""Validators of the plugin's settings: each turns a raw value into a setting or raises
ValueError naming where the value came from ("invalid jobs '0' from --orcjit-jobs: ...").

Used by :mod:`pytest_orcjit.settings`, which picks the values (marker > command
line > ini > default), and by ``orcjit_compile``'s ``cflags``.
"""

from __future__ import annotations

import glob
import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .compiler import language_of

MSG_INVALID = "orcjit: invalid {what} {value!r} from {origin}: {expected}"
MSG_EMPTY_GLOB = "orcjit: {origin} glob {glob!r} matches no file (relative to {base})"
MSG_BAD_SOURCE = "orcjit: {origin}: {error}"
MSG_DIRECTORY = (
    "orcjit: {origin} names the directory {glob!r}, not sources; give test paths before "
    "--orcjit-sources or write --orcjit-sources=GLOB"
)
ISOLATIONS = ("fork", "none")
PCH_MODES = ("auto", "off")


@dataclass(frozen=True)
class Picked:
    """A raw setting and where it came from ("--orcjit-jobs", "ini orcjit_jobs", ...)."""

    value: Any
    origin: str


def expand(globs: Iterable[Any], base: Path, origin: str) -> tuple[Path, ...]:
    """Expand globs (relative to ``base``); every glob must match a known source kind."""
    if isinstance(globs, (str, bytes)) or not isinstance(globs, Iterable):
        raise invalid("sources", globs, origin, "a list of paths or globs")
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
            raise invalid(what, picked.value, picked.origin, err) from None
    if isinstance(picked.value, Sequence) and all(isinstance(f, str) for f in picked.value):
        return tuple(picked.value)
    raise invalid(what, picked.value, picked.origin, "a string or a list of strings")


def define_flags(picked: Picked) -> tuple[str, ...]:
    """``{"N": 4, "FAST": None}`` -> ``("-DN=4", "-DFAST")``."""
    if not isinstance(picked.value, dict):
        raise invalid("defines", picked.value, picked.origin, "a dict")
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
    raise invalid("libs", value, picked.origin, "a library name or path, or a list of them")


def parse_jobs(picked: Picked) -> int:
    if picked.value is None:
        return os.cpu_count() or 1
    return int(check(picked, picked.value, "jobs", _positive_int, "a positive integer"))


def parse_isolation(picked: Picked, default: str) -> str:
    if picked.value is None:
        return default
    return str(check(picked, picked.value, "isolation", lambda v: v in ISOLATIONS, "fork or none"))


def parse_pch(picked: Picked) -> bool:
    """Whether to use precompiled headers: ``auto`` (default) or ``off``."""
    if picked.value is None:
        return True
    return check(picked, picked.value, "pch", PCH_MODES.__contains__, "auto or off") == "auto"


def parse_timeout(picked: Picked) -> float | None:
    """Seconds as a number >= 0; None or 0 means no timeout."""
    if picked.value is None:
        return None
    seconds = float(check(picked, picked.value, "timeout", _non_negative, "seconds >= 0"))
    return seconds or None


def parse_cuda_archs(picked: Picked) -> tuple[str, ...] | None:
    """``"80;90"`` -> ``("80", "90")``; None (the GPU's own, else the default) if not given."""
    if picked.value is None:
        return None
    from .cuda import parse_archs

    try:
        return parse_archs(picked.value)
    except ValueError as err:
        raise invalid("CUDA architecture", picked.value, picked.origin, err) from None


def parse_cuda_device(picked: Picked) -> int:
    if picked.value is None:
        return 0
    return int(check(picked, picked.value, "CUDA device", _non_negative_int, "an index >= 0"))


def check(picked: Picked, value: Any, what: str, valid: Any, expected: str) -> Any:
    if not valid(value):
        raise invalid(what, value, picked.origin, expected)
    return value


def invalid(what: str, value: Any, origin: str, expected: object) -> ValueError:
    return ValueError(MSG_INVALID.format(what=what, value=value, origin=origin, expected=expected))


def _int_at_least(minimum: int) -> Callable[[Any], bool]:
    def valid(value: Any) -> bool:
        try:
            return int(value) >= minimum and not isinstance(value, bool)
        except (TypeError, ValueError):
            return False

    return valid


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _non_negative(value: Any) -> bool:
    try:
        return float(value) >= 0 and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False
