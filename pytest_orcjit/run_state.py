"""The plugin's state for one run, kept in ``config.stash``, and each item's resolved settings.

Shared by the hooks and fixtures (:mod:`pytest_orcjit.plugin`) and the compile
step (:mod:`pytest_orcjit.compile_step`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import settings
from .compiler import Builder, Outcome, Stats, Unit
from .settings import ItemSettings, SessionSettings

if TYPE_CHECKING:
    from .api import ExecutionSession, Library

PreparedKey = tuple[tuple[Path, ...], tuple[str, ...]]
"""What a fork server's prepared library is made of: its objects, and the shared libraries loaded
for them (``kernel_libraries.Needed``, as text)."""


@dataclass(frozen=True)
class Prepared:
    """A library the fork server linked, constructors run, for its children's ``orcjit_lib``."""

    key: PreparedKey
    library: Library


@dataclass
class State:
    """Per-run state of the plugin (``config.stash[STATE]``)."""

    settings: SessionSettings
    builder: Builder | None = None
    cxx_command: tuple[str, ...] | None = None
    """The C++ compiler of --orcjit-libs searches (``compile_step.cxx_command``), once picked."""
    outcomes: dict[Unit, Outcome] = field(default_factory=dict)
    session: ExecutionSession | None = None
    fork_prepared: bool = False
    worker_stats: Stats = field(default_factory=Stats)
    generation: int = 0
    """Changes whenever the pytest process changes what a forked test inherits."""
    warning_filters: list[Any] = field(default_factory=list)
    """The warning filters outside any test, which forked tests start from."""
    forked: bool = False
    pid: int = field(default_factory=os.getpid)
    """The pytest process: a forked test's child has another pid."""
    children_stats: Path | None = None
    """Where forked tests append what their ``orcjit_compile`` calls compiled."""
    temporary_cache: Path | None = None
    """The cache directory made for a run without pytest's cache (removed at its end)."""
    failures_shown: dict[Unit, str] = field(default_factory=dict)
    """The test whose error shows a source's compile diagnostics; the others point to it."""
    sources: dict[Path, Path] = field(default_factory=dict)
    """The source of every object compiled in this run, which errors name (error_sources)."""
    libraries: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)
    """The shared libraries (name, compiler) found in the pytest process, which children inherit."""
    learned: list[tuple[str, str]] = field(default_factory=list)
    """The modules forked tests imported that the pytest process imported too (learned_imports)."""
    prepared: Prepared | None = None
    """In a fork server and its children: the library it linked, until a child's test takes it."""


STATE = pytest.StashKey[State]()
ITEM = pytest.StashKey["ItemSettings | str"]()
"""An item's resolved settings, or the message of its invalid marker."""


def item_settings(item: pytest.Item) -> ItemSettings | str:
    """The item's resolved settings (cached), or the message of its invalid marker."""
    if ITEM not in item.stash:
        try:
            item.stash[ITEM] = settings.item_settings(item, item.config.stash[STATE].settings)
        except ValueError as err:
            item.stash[ITEM] = str(err)
    return item.stash[ITEM]
