"""Compiling and caching: once per run, warm reruns, header edits, corruption, errors, xdist."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from plugin_helpers import C_ADD, TVM_ADD, Project, make_project

from pytest_orcjit import cache, compile_step, compiler

USES_OBJECTS = """
def test_one(orcjit_objects):
    assert len(orcjit_objects) == {n}

def test_two(orcjit_objects):
    assert len(orcjit_objects) == {n}
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(pytester, monkeypatch)


@pytest.fixture
def three_sources(project: Project) -> Project:
    """a.c includes a.h, b.c includes b.h, c.c includes nothing; two tests use all three."""
    project.write("kernels/a.h", "#define A 1\n")
    project.write("kernels/b.h", "#define B 2\n")
    project.write("kernels/a.c", '#include "a.h"\nint a(void) { return A; }\n')
    project.write("kernels/b.c", '#include "b.h"\nint b(void) { return B; }\n')
    project.write("kernels/c.c", C_ADD)
    project.write("test_objects.py", USES_OBJECTS.format(n=3))
    project.ini("orcjit_sources = kernels/*.c")
    return project


def summary(compiled: int, reused: int) -> str:
    line = compile_step.MSG_SUMMARY.format(compiled=compiled, reused=reused, failed="", seconds=0)
    return line[:-5]


def test_each_source_compiles_once_per_run(three_sources: Project) -> None:
    result = three_sources.pytester.runpytest()
    result.assert_outcomes(passed=2)
    # Two tests need the same three sources: three compiles, not six.
    assert three_sources.compiles() == [three_sources.rel(f"kernels/{n}.c") for n in "abc"]
    result.stdout.fnmatch_lines([f"{summary(compiled=3, reused=0)}*s"])


def test_warm_rerun_starts_no_compiler(three_sources: Project) -> None:
    three_sources.pytester.runpytest().assert_outcomes(passed=2)
    three_sources.reset_log()
    result = three_sources.pytester.runpytest()
    result.assert_outcomes(passed=2)
    assert three_sources.runs() == []  # not even `--version`
    result.stdout.fnmatch_lines([f"{summary(compiled=0, reused=3)}*s"])


def test_header_edit_recompiles_exactly_its_includers(three_sources: Project) -> None:
    three_sources.pytester.runpytest().assert_outcomes(passed=2)
    three_sources.reset_log()
    three_sources.write("kernels/a.h", "#define A 10\n")
    result = three_sources.pytester.runpytest()
    result.assert_outcomes(passed=2)
    assert three_sources.compiles() == [three_sources.rel("kernels/a.c")]
    result.stdout.fnmatch_lines([f"{summary(compiled=1, reused=2)}*s"])


def test_cache_clear_empties_the_cache(three_sources: Project) -> None:
    three_sources.pytester.runpytest().assert_outcomes(passed=2)
    three_sources.reset_log()
    three_sources.pytester.runpytest("--cache-clear").assert_outcomes(passed=2)
    assert len(three_sources.compiles()) == 3


@pytest.mark.parametrize("damage", ["truncate", "foreign", "no-sidecar"])
def test_corrupt_entry_is_discarded_with_a_warning_and_rebuilt(
    three_sources: Project, damage: str
) -> None:
    three_sources.pytester.runpytest().assert_outcomes(passed=2)
    three_sources.reset_log()
    victim = sorted((three_sources.path / ".pytest_cache/d/orcjit").glob("*.o"))[0]
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:100])
    elif damage == "foreign":
        victim.write_bytes(b"\x7fELF" + b"x" * (victim.stat().st_size - 4))
    else:
        victim.with_suffix(".json").unlink()
    result = three_sources.pytester.runpytest()
    result.assert_outcomes(passed=2)
    head = cache.MSG_CORRUPT.format(path=victim, reason="*")
    result.stdout.fnmatch_lines(["*CacheWarning: " + head])
    assert len(three_sources.compiles()) == 1


def test_compile_error_fails_only_the_tests_that_need_it(project: Project) -> None:
    project.write("kernels/good.c", C_ADD)
    project.write("kernels/bad.c", "int broken(void) { return nope; }\n")
    project.write(
        "test_mixed.py",
        """
import pytest

def test_good(orcjit_objects):
    assert len(orcjit_objects) == 1

@pytest.mark.orcjit(sources=["kernels/bad.c"])
def test_bad(orcjit_objects):
    pass

def test_plain():
    pass
""",
    )
    project.ini("orcjit_sources = kernels/good.c")
    result = project.pytester.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    head = compile_step.MSG_COMPILE_FAILED.format(source="kernels/bad.c", diagnostics="")
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_bad*",
            head.rstrip(),
            "*kernels/bad.c:1:*: error: *nope*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    # A failed compile is not cached: the next run shows the diagnostics again.
    project.reset_log()
    project.pytester.runpytest().assert_outcomes(passed=2, errors=1)
    assert project.compiles() == [project.rel("kernels/bad.c")]


def test_cflags_std_and_c_sources(project: Project) -> None:
    project.write("kernels/k.cc", "int k() { return 1; }\n")
    project.write("kernels/c.c", C_ADD)
    project.write("test_objects.py", USES_OBJECTS.format(n=2))
    project.ini("orcjit_sources = kernels/*", "orcjit_cflags = -O1", "orcjit_std = c++17")
    result = project.pytester.runpytest("--orcjit-cflags=-O2 -DFROM_CLI")
    result.assert_outcomes(passed=2)
    lines = {line.split(" -c ")[1].split()[0]: line for line in project.compile_runs()}
    cxx_line, c_line = lines[project.rel("kernels/k.cc")], lines[project.rel("kernels/c.c")]
    assert "-std=c++17" in cxx_line.split() and "-std=c++17" not in c_line
    for line in (cxx_line, c_line):
        assert {"-fPIC", "-O2", "-DFROM_CLI", "-MD"} <= set(line.split())
        assert "-O1" not in line.split()  # the CLI replaces the ini value
        assert "-I" + str(Path(compiler.include_flags()[0][2:])) in line


def test_default_std_compiles_tvm_ffi_lambda_exports(project: Project) -> None:
    project.write("kernels/add.cc", TVM_ADD)
    project.write("test_objects.py", USES_OBJECTS.format(n=1))
    project.ini("orcjit_sources = kernels/add.cc")
    project.pytester.runpytest().assert_outcomes(passed=2)


def test_orcjit_compile_path_and_text_are_cached(project: Project) -> None:
    project.write("kernels/k.c", C_ADD)
    project.write(
        "test_compile.py",
        """
import pytest
from pytest_orcjit.compiler import CompileError

def test_compile(orcjit_compile):
    first = orcjit_compile("kernels/k.c", cflags=["-DX=1"])
    assert first == orcjit_compile("kernels/k.c", cflags="-DX=1")
    assert first.suffix == ".o" and first.exists()
    text = orcjit_compile("int f(void) { return 2; }\\n", language="c")
    assert text.exists() and text != first
    with pytest.raises(CompileError, match=r"the c\\+\\+ source text given to orcjit_compile "
                       r"\\(kept as .*\\.cc\\) failed:\\n(.|\\n)*error"):
        orcjit_compile("int f( {\\n")
    with pytest.raises(FileNotFoundError, match="missing.c; a path is relative to the test"):
        orcjit_compile("missing.c")
    with pytest.raises(FileNotFoundError, match="source text must span lines"):
        orcjit_compile("int g(void) { return 3; }")
""",
    )
    project.ini()
    project.pytester.runpytest().assert_outcomes(passed=1)
    assert len(project.compiles()) == 3  # k.c, the C text, the broken text
    project.reset_log()
    project.pytester.runpytest().assert_outcomes(passed=1)
    assert len(project.compiles()) == 1  # only the broken text again


def test_works_without_the_cache_plugin(three_sources: Project) -> None:
    result = three_sources.pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_collect_only_compiles_nothing(three_sources: Project) -> None:
    three_sources.pytester.runpytest("--collect-only").assert_outcomes()
    assert three_sources.compiles() == []


def test_xdist_workers_compile_each_source_once(three_sources: Project) -> None:
    three_sources.write("test_more.py", USES_OBJECTS.format(n=3))
    result = three_sources.pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=4)
    # Both workers need all three sources; the per-entry lock lets only one compile each.
    assert three_sources.compiles() == [three_sources.rel(f"kernels/{n}.c") for n in "abc"]
    # Each object is counted once, whichever worker compiled or reused it.
    result.stdout.fnmatch_lines([f"{summary(compiled=3, reused=0)}*s"])


# The cache and the compiler helpers without pytest.


def test_concurrent_gets_build_an_entry_once(tmp_path: Path) -> None:
    store, builds, barrier = cache.ObjectCache(tmp_path), [], threading.Barrier(4)

    def build(out: Path) -> list[Path]:
        builds.append(out)
        out.write_bytes(b"object")
        return []

    def get() -> None:
        barrier.wait()
        entry = store.get(["same"], build)
        assert entry.object.read_bytes() == b"object"

    threads = [threading.Thread(target=get) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_parse_depfile_handles_continuations_and_escapes(tmp_path: Path) -> None:
    text = "out.o: /a/x.cc /a/my\\ dir/y.h \\\n  /a/z.h /a/x.cc\n"
    assert compiler.parse_depfile(text) == [
        Path("/a/x.cc"),
        Path("/a/my dir/y.h"),
        Path("/a/z.h"),
    ]


def test_find_cxx_prefers_cxx_then_newest_clang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("clang++-7", "clang++-15", "clang-15", "g++"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    assert compiler.find_cxx() == "clang++-15"
    assert compiler.find_cc(str(tmp_path / "clang++-15")) == str(tmp_path / "clang-15")
    assert compiler.find_cxx("my-c++") == "my-c++"
    monkeypatch.setenv("CXX", "ccache g++")
    assert compiler.find_cxx() == "ccache g++"
    os.remove(tmp_path / "clang++-7")
    os.remove(tmp_path / "clang++-15")
    monkeypatch.delenv("CXX")
    assert compiler.find_cxx() == "g++"


def test_a_file_rewritten_with_the_same_size_at_once_hashes_anew(tmp_path: Path) -> None:
    # Hashes are remembered by path and stat; a rewrite within the clock tick keeps the stat
    # but not the content, so a file changed this recently is hashed every time.
    path = tmp_path / "scale.h"
    path.write_text("#define SCALE 3\n")
    first = cache.sha256_file(path)
    path.write_text("#define SCALE 4\n")
    assert cache.sha256_file(path) != first
    assert cache.sha256_file(path) == cache.sha256_file(str(path))


@pytest.fixture
def no_known_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process has remembered no file hash yet (as at the start of a run)."""
    monkeypatch.setattr(cache, "_HASHES", {})
    monkeypatch.setattr(cache, "_UNSAVED", set())


@pytest.mark.usefixtures("no_known_hashes")
def test_saved_hashes_are_trusted_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    header = tmp_path / "scale.h"
    header.write_text("#define SCALE 3\n")
    row = [*cache._stat_key(header), "remembered"]
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache/hashes.json").write_text(json.dumps([row]))
    cache.ObjectCache(tmp_path / "cache").find(["anything"])  # reads hashes.json
    assert cache.sha256_file(header) == "remembered"  # the same stat: not read again
    header.write_text("#define SCALE 4\n")  # a new ctime, whatever the size and mtime
    assert cache.sha256_file(header) == hashlib.sha256(b"#define SCALE 4\n").hexdigest()


@pytest.mark.usefixtures("no_known_hashes")
def test_hashes_of_unchanged_headers_are_saved_in_the_cache(tmp_path: Path) -> None:
    source = tmp_path / "add.c"
    source.write_text("#include <tvm/ffi/c_api.h>\n" + C_ADD)
    built = compiler.Builder(compiler.Compiler.probe("gcc"), tmp_path / "cache")
    built.compile(source)
    saved = json.loads((tmp_path / "cache/hashes.json").read_text())
    c_api = [row for row in saved if row[0].endswith("tvm/ffi/c_api.h")]
    assert c_api and c_api[0][6] == cache.sha256_file(Path(c_api[0][0]))
    assert not [row for row in saved if row[0] == str(source)]  # written just now: not kept
