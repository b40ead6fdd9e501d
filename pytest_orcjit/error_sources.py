"""Errors met through the plugin name the source the user wrote, not the cache file.

The native core names an object by the path it was given, and the plugin gives
it the object files of its cache (``.pytest_cache/d/orcjit/<hash>.o``). Before
pytest reports a test's error, :func:`name_sources` rewrites every such path in
the error's message (and in the errors it was raised from) to the source,
relative to the rootdir, with the cache file in parentheses:
``kernels/vmul.cc (.pytest_cache/d/orcjit/9f10....o)``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

_NAMED = "__orcjit_sources_named__"


def describe(source: Path, obj: Path, rootdir: Path) -> str:
    """How messages name the object ``obj`` compiled from ``source``."""
    return f"{relative(source, rootdir)} ({relative(obj, rootdir)})"


def name_sources(error: BaseException, sources: Mapping[Path, Path], rootdir: Path) -> None:
    """Name by its source each object of ``sources`` (object -> source) that ``error`` names.

    Rewrites the messages of ``error`` and of the errors it was raised from
    (only their string arguments), once per error.
    """
    names = {str(obj): describe(source, obj, rootdir) for obj, source in sources.items()}
    seen: set[int] = set()
    current: BaseException | None = error
    while names and current is not None and id(current) not in seen:
        seen.add(id(current))
        if not getattr(current, _NAMED, False) and current.args:
            args = tuple(_rename(arg, names) for arg in current.args)
            if args != current.args:
                current.args = args
            with contextlib.suppress(AttributeError):  # an exception type with __slots__
                setattr(current, _NAMED, True)
        current = current.__cause__ or current.__context__


def relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it is inside, else as it is."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _rename(arg: object, objects: Mapping[str, str]) -> object:
    if not isinstance(arg, str) or os.sep not in arg:
        return arg
    for path, name in objects.items():
        if path in arg:
            arg = arg.replace(path, name)
    return arg
