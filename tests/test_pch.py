"""Precompiled headers: the same objects and diagnostics as a plain compile, fewer parses.

Each C++ source that includes the tvm-ffi headers first is compiled with a
PCH of them (clang ``-include-pch``, gcc ``.gch``), built once per compiler
and flags and cached like an object. These tests compare every result with
the same compile with the PCH off.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import pytest
from plugin_helpers import TVM_ADD, Project, make_project

from pytest_orcjit import pch
from pytest_orcjit.compiler import Builder, CompileError, Compiler, Unit

COMPILERS = [name for name in ("clang++-22", "g++") if shutil.which(name)]

KERNEL = """\
// A kernel that includes tvm-ffi first, then a header of its own.
#include <tvm/ffi/function.h>
#include <tvm/ffi/container/tensor.h>
#include "scale.h"

int64_t Scale(int64_t x) { return SCALE * x; }
TVM_FFI_DLL_EXPORT_TYPED_FUNC(scale, Scale);
"""

BROKEN = """\
#include <tvm/ffi/function.h>
int64_t Broken(int64_t x) { return x + undeclared; }
TVM_FFI_DLL_EXPORT_TYPED_FUNC(broken, Broken);
"""


def compile_with_sibling(builder: Builder, source: Path) -> Path:
    """Compile ``source`` in a batch with a copy of it: flags two sources share get a PCH."""
    sibling = source.with_name(f"sibling_{source.name}")
    sibling.write_text(source.read_text().replace("TYPED_FUNC(", "TYPED_FUNC(sibling_"))
    unit = Unit(source.resolve())
    outcome = builder.compile_many([unit, Unit(sibling.resolve())], jobs=2)[unit]
    if outcome.error is not None:
        raise outcome.error
    assert outcome.object is not None
    return outcome.object


def exports(obj: Path) -> str:
    """The object's defined global symbols, as ``nm`` lists them."""
    return subprocess.run(["nm", "-g", "--defined-only", str(obj)], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


@pytest.fixture(params=COMPILERS)
def builders(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Builder, Builder]:
    """A builder with the PCH and one without, for the same compiler, in separate caches."""
    compiler = Compiler.probe(request.param)
    on = Builder(compiler, tmp_path / "on", use_pch=True)
    off = Builder(compiler, tmp_path / "off", use_pch=False)
    return on, off


def test_same_exports_with_and_without_the_pch(builders, tmp_path: Path) -> None:
    on, off = builders
    (tmp_path / "scale.h").write_text("#define SCALE 3\n")
    source = tmp_path / "kernel.cc"
    source.write_text(KERNEL)
    with_pch = compile_with_sibling(on, source)
    command = on.command(Unit(source.resolve()), Path("out.o"))
    assert "-include-pch" in command or "-include" in command  # the PCH is used
    assert exports(with_pch) == exports(off.compile(source))


def test_same_diagnostics_with_and_without_the_pch(builders, tmp_path: Path) -> None:
    source = tmp_path / "broken.cc"
    source.write_text(BROKEN)
    errors = []
    for compile_one in (functools.partial(compile_with_sibling, builders[0]), builders[1].compile):
        with pytest.raises(CompileError) as info:
            compile_one(source)
        errors.append(info.value.diagnostics)
    assert "-include" in " ".join(builders[0].command(Unit(source.resolve()), Path("out.o")))
    assert "undeclared" in errors[0]
    assert errors[0] == errors[1]


def test_header_edit_recompiles_with_the_pch(builders, tmp_path: Path) -> None:
    on, _ = builders
    header = tmp_path / "scale.h"
    header.write_text("#define SCALE 3\n")
    source = tmp_path / "kernel.cc"
    source.write_text(KERNEL)
    first = compile_with_sibling(on, source)
    header.write_text("#define SCALE 4\n")
    second = on.compile(source)  # alone: it uses the PCH the batch built
    assert first != second
    assert "-include" in " ".join(on.command(Unit(source.resolve()), Path("out.o")))


def test_a_source_compiled_alone_builds_no_pch(builders, tmp_path: Path) -> None:
    on, _ = builders
    (tmp_path / "scale.h").write_text("#define SCALE 3\n")
    source = tmp_path / "kernel.cc"
    source.write_text(KERNEL)
    on.compile(source)  # a PCH costs about two compiles: not for one source
    assert not {"-include-pch", "-include"} & set(on.command(Unit(source), Path("out.o")))


@pytest.mark.parametrize(
    ("head", "uses_pch"),
    [
        ("", True),
        ("// a comment\n/* a block\n   comment */\n#include <vector>\n", True),
        ("#define TVM_FFI_SOMETHING 1\n", False),  # a macro the tvm-ffi headers could see
        ('#include "config.h"\n', False),  # a header of the project's, which could define one
        ("#if 1\n#endif\n", False),
    ],
    ids=["first", "comments-and-system-headers", "define", "local-header", "conditional"],
)
def test_only_sources_that_include_tvm_ffi_first_are_eligible(
    tmp_path: Path, head: str, uses_pch: bool
) -> None:
    source = tmp_path / "k.cc"
    source.write_text(head + "#include <tvm/ffi/function.h>\nint f() { return 1; }\n")
    assert pch.eligible(source) is uses_pch


def test_c_sources_and_sources_without_tvm_ffi_get_no_pch(tmp_path: Path) -> None:
    c_source, plain = tmp_path / "k.c", tmp_path / "p.cc"
    c_source.write_text("#include <tvm/ffi/c_api.h>\nint f(void) { return 1; }\n")
    plain.write_text("int f() { return 1; }\n")
    builder = Builder(Compiler.probe(COMPILERS[0]), tmp_path / "cache")
    for source in (c_source, plain):
        command = builder.command(Unit(source), Path("out.o"))
        assert not {"-include-pch", "-include"} & set(command)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(pytester, monkeypatch)
    project.write("kernels/add.cc", TVM_ADD)
    project.write("kernels/mul.cc", TVM_ADD.replace("test_add", "test_mul").replace("+", "*"))
    project.write("test_add.py", "def test_objects(orcjit_objects):\n    assert orcjit_objects\n")
    return project


@pytest.mark.parametrize(("option", "expect_pch"), [(None, True), ("--orcjit-pch=off", False)])
def test_plugin_uses_the_pch_unless_off(project: Project, option: str | None, expect_pch) -> None:
    project.ini("orcjit_sources = kernels/*.cc")
    args = [option] if option else []
    project.pytester.runpytest(*args).assert_outcomes(passed=1)
    compiles = project.compile_runs()
    assert len(compiles) == 2
    for command in compiles:
        assert ("-include-pch" in command or "-include " in command) is expect_pch


def test_bad_ini_pch_value_names_the_ini(project: Project) -> None:
    project.ini("orcjit_sources = kernels/add.cc", "orcjit_pch = maybe")
    result = project.pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid pch 'maybe' from ini orcjit_pch: auto or off*"])


def test_sources_differing_in_their_own_macros_share_a_pch(builders, tmp_path: Path) -> None:
    on, off = builders
    (tmp_path / "scale.h").write_text("#ifndef SCALE\n#define SCALE 3\n#endif\n")
    source = tmp_path / "kernel.cc"
    source.write_text(KERNEL)
    # SCALE appears in no tvm-ffi header: sources compiled with -DSCALE=... share one PCH.
    units = [Unit(source.resolve(), (f"-DSCALE={n}",)) for n in (4, 5)]
    outcomes = on.compile_many(units, jobs=2)
    commands = [on.command(unit, Path("out.o")) for unit in units]
    assert all("-include-pch" in c or "-include" in c for c in commands)
    assert len({c[c.index("-include-pch" if "-include-pch" in c else "-include") + 1]
                for c in commands}) == 1  # fmt: skip
    for unit, outcome in outcomes.items():
        assert outcome.object is not None
        plain = off.compile(source, unit.flags)
        assert exports(outcome.object) == exports(plain)
    # A macro the tvm-ffi headers test could change what they declare: no PCH for it.
    odd = Unit(source.resolve(), ("-DTVM_FFI_INLINE=inline",))
    assert not {"-include-pch", "-include"} & set(on.command(odd, Path("out.o")))


def test_macro_names_are_words_of_code_not_of_comments_or_literals(tmp_path: Path) -> None:
    header = tmp_path / "h.h"
    header.write_text('// SCALE in a comment\n/* BLOCK */\nconst char* s = "WIDTH";\nint DEPTH;\n')
    answers = pch._named_in([header], ["SCALE", "BLOCK", "WIDTH", "DEPTH", "SCAL"])
    assert answers == {"SCALE": False, "BLOCK": False, "WIDTH": False, "DEPTH": True, "SCAL": False}
    # A header that cannot be read could name any macro.
    assert pch._named_in([tmp_path / "gone.h"], ["SCALE"]) == {"SCALE": True}


def test_macro_answers_are_remembered_beside_the_pch(
    builders, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on, _ = builders
    (tmp_path / "scale.h").write_text("#ifndef SCALE\n#define SCALE 3\n#endif\n")
    source = tmp_path / "kernel.cc"
    source.write_text(KERNEL)
    units = [Unit(source.resolve(), (f"-DSCALE={n}",)) for n in (4, 5)]
    on.compile_many(units, jobs=2)
    # A later run reads the answer for SCALE instead of the headers.
    monkeypatch.setattr(pch, "_named_in", lambda files, names: pytest.fail("headers read"))
    again = Builder(on.cxx, on.cache.root, use_pch=True)
    assert again.compile_many(units[:1], jobs=1)[units[0]].reused
    assert "-include" in " ".join(again.command(units[0], Path("out.o")))


@pytest.mark.parametrize("name", COMPILERS)
def test_a_pch_changes_no_cache_key(tmp_path: Path, name: str) -> None:
    # A source compiled with the PCH is found by a compile without it, and the other way round:
    # a source compiled plainly while the PCH builds is not compiled again by the next run.
    compiler = Compiler.probe(name)
    (tmp_path / "scale.h").write_text("#define SCALE 3\n")
    source = tmp_path / "kernel.cc"
    source.write_text(KERNEL)
    with_pch = compile_with_sibling(Builder(compiler, tmp_path / "cache"), source)
    unit = Unit(source.resolve())
    outcome = Builder(compiler, tmp_path / "cache", use_pch=False).compile_many([unit], 1)[unit]
    assert outcome.reused
    assert outcome.object == with_pch
