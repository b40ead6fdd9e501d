"""Later loads of an object link a copy of the graph its first load prepared.

The session keeps, for each object file and set of inline functions taken from
the objects linked before it, the graph that linking prepared, with the sections
dead-stripping emptied left out and a flat plan of its copies
(csrc/graph_copy.h). A load from such a copy must behave exactly as the first
load did, and a changed file must be read, checked and prepared again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_orcjit import ExecutionSession

LOADS = 3
"""The first load prepares the graphs, the later ones copy them."""


@pytest.mark.parametrize("order", ["bounds-first", "inline-first"])
def test_every_load_sees_the_same_library(
    session: ExecutionSession, kernels, toolchain, order: str
) -> None:
    """Section bounds, shared inline code and exceptions through it, load after load: the object
    linked second takes checked_half() from the first, whose emptied section is left out."""
    cxx, opt = toolchain
    objects = [
        kernels.object("section_bounds.cc", opt, compiler=cxx),
        kernels.object("shared_inline_a.cc", opt, compiler=cxx),
    ]
    if order == "inline-first":
        objects.reverse()
    for _ in range(LOADS):
        module = session.load_module(objects)
        assert module.item_sum() == 3 + 4  # __start_/__stop_ bracket the section's items
        assert module.half_items(8) == 4
        assert module.half_a(6) == 3
        with pytest.raises(RuntimeError, match="odd value 7"):
            module.half_items(7)


def test_section_reached_only_through_its_bounds_is_kept(
    session: ExecutionSession, kernels, toolchain
) -> None:
    """A section nothing refers to but its __start_/__stop_ symbols survives dead-stripping, as
    under GNU ld: the walk between the bounds finds its items, load after load."""
    cxx, opt = toolchain
    path = kernels.object("section_bounds.cc", opt, "-DORCJIT_BOUNDS_ONLY", compiler=cxx)
    for _ in range(LOADS):
        assert session.load_module([path]).item_sum() == 3 + 4


def test_rewritten_object_is_prepared_again(
    session: ExecutionSession, kernels, tmp_path: Path
) -> None:
    """An object rewritten at the same path, after its graphs were prepared, is read again: its new
    section content and its new export are seen, and its old export is gone."""
    path = tmp_path / "kernel.o"
    path.write_bytes(kernels.read("section_bounds.cc", "-O0"))
    inline = kernels.object("shared_inline_a.cc", "-O0")
    for _ in range(LOADS):
        assert session.load_module([inline, path]).item_sum() == 7
    replacement = tmp_path / "replacement.o"
    replacement.write_bytes(kernels.read("section_bounds.cc", "-O0", "-DORCJIT_MORE_ITEMS"))
    os.replace(replacement, path)
    for _ in range(LOADS):
        assert session.load_module([inline, path]).item_sum() == 3 + 4 + 5
    replacement.write_bytes(kernels.read("implementation_v2.cc", "-O0"))
    os.replace(replacement, path)
    for _ in range(LOADS):
        module = session.load_module([inline, path])
        assert module.test_implementation() == 2
        with pytest.raises(AttributeError, match="item_sum"):
            module.item_sum  # noqa: B018


@pytest.mark.parametrize("debug", [(), ("-g",)], ids=["merged", "-g, kept apart"])
def test_per_function_and_per_variable_sections(
    session: ExecutionSession, kernels, toolchain, debug: tuple[str, ...]
) -> None:
    """An object with a section per function and per variable: a prepared copy merges them into
    one section of each kind (not with -g), and every load still sees its own fresh data, its
    constants, its vtable and its constructor run once."""
    cxx, opt = toolchain
    path = kernels.object(
        "split_sections.cc", opt, "-ffunction-sections", "-fdata-sections", *debug, compiler=cxx
    )
    for _ in range(LOADS):
        module = session.load_module([path])
        assert module.constructed() == 1
        assert [module.bump(), module.bump()] == [41, 43]
        assert [module.entry(i) for i in range(5)] == [3, 5, 7, 11, 3]
        assert module.sides() == 4
