"""The compile cache under concurrent runs, the inputs its key covers, and damage.

Two pytest runs with four xdist workers each compile the same sources at once
through slow wrapper compilers: every source is compiled once in all. Each
input of the cache key (language standard, flags and their order, compiler
path, compiler version, tvm-ffi version, source content) is changed in turn:
exactly the sources it shapes are compiled again. Damaged entries that
``test_plugin_cache.py`` does not cover (a foreign sidecar, an empty object, a
garbage manifest, damage met by xdist workers, a foreign file under a source
text's name) are rebuilt, with a CacheWarning where an object was discarded.
Header edits and warm reruns are in ``test_plugin_cache.py``.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_helpers import REAL_CC, REAL_CXX, Project, core_available, make_project

from pytest_orcjit import cache, compile_step, compiler


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    # hypothesis's plugin would import hypothesis anew in every run it is loaded into,
    # which takes seconds; these runs do not use it.
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")
    return make_project(pytester, monkeypatch)


def slow_wrapper(project: Project, name: str, real: str, delay: float) -> Path:
    """Like ``Project.wrapper``, but a compile (not a ``--version`` probe) sleeps first."""
    path = project.path / "bin" / name
    path.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" -c "*) sleep {delay};; esac\n'
        f'echo "$@" >> "{project.log}"\n'
        f'exec {real} "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def summary_counts(lines: list[str]) -> tuple[int, int]:
    """(compiled, reused) from a run's ``MSG_SUMMARY`` line."""
    head = re.escape(compile_step.MSG_SUMMARY.split("{compiled}")[0])
    for line in lines:
        found = re.match(head + r"(\d+), reused (\d+) ", line)
        if found:
            return int(found.group(1)), int(found.group(2))
    raise AssertionError("no orcjit summary line in:\n" + "\n".join(lines))


# Concurrency: two runs, four workers each, one cache.

C_KERNEL = """\
#include <tvm/ffi/c_api.h>
int __tvm_ffi_k{i}(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {{
  (void)self; (void)args; (void)num_args;
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = {i};
  return 0;
}}
"""
"""A C kernel returning ``i`` through the TVM-FFI safe-call ABI (compiles in milliseconds)."""

CXX_ADD = """\
#include <tvm/ffi/c_api.h>
extern "C" int __tvm_ffi_test_add(void*, const TVMFFIAny* args, int32_t, TVMFFIAny* result) {
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = args[0].v_int64 + args[1].v_int64;
  return 0;
}
"""
"""A C++ kernel on the C ABI: the C++ compiler without the seconds the C++ headers take."""

USES_ALL_KERNELS = """
import pytest

@pytest.mark.parametrize("n", range(6))
def test_kernels(orcjit_lib, n):
    assert [orcjit_lib.get_function(f"k{{i}}")() for i in range({k})] == list(range({k}))
    assert orcjit_lib.test_add(n, 1) == n + 1
"""


def start_run(project: Project, n: int) -> subprocess.Popen[bytes]:
    """Start ``pytest -n 4`` in the project; its output goes to ``run<n>.out``."""
    argv = [sys.executable, "-m", "pytest", "-n", "4", f"--basetemp={project.path}/t{n}"]
    with open(project.path / f"run{n}.out", "wb") as output:  # a file, not a pipe: no deadlock
        return subprocess.Popen(argv, cwd=project.path, stdout=output, stderr=output)


def finish_run(project: Project, n: int, run: subprocess.Popen[bytes]) -> pytest.RunResult:
    ret = run.wait(timeout=300)
    lines = (project.path / f"run{n}.out").read_text().splitlines()
    return pytest.RunResult(ret, lines, [], 0.0)


@pytest.mark.skipif(not core_available(), reason="the native core is not built")
def test_two_runs_with_four_workers_each_compile_every_source_once(project: Project) -> None:
    names = ["add.cc", "k0.c", "k1.c", "k2.c", "k3.c"]
    for i in range(4):
        project.write(f"kernels/k{i}.c", C_KERNEL.format(i=i))
    project.write("kernels/add.cc", CXX_ADD)
    project.write("test_a.py", USES_ALL_KERNELS.format(k=4))
    project.write("test_b.py", USES_ALL_KERNELS.format(k=4))
    # Every compile waits a little, so that all eight workers ask for it while it runs.
    slow_wrapper(project, "cxx", REAL_CXX, delay=0.5)
    slow_wrapper(project, "cc", REAL_CC, delay=0.5)
    project.ini("orcjit_sources = kernels/*")

    # Same rootdir: one .pytest_cache, so one object cache for both runs.
    runs = [start_run(project, n) for n in range(2)]
    results = [finish_run(project, n, run) for n, run in enumerate(runs)]

    for result in results:
        assert result.ret == 0, "\n".join(result.outlines)
        result.assert_outcomes(passed=12)
    # Each source compiled once in all (the --version probes are not compiles) ...
    assert project.compiles() == [project.rel(f"kernels/{name}") for name in names]
    # ... and each run counts each of its five objects once (compiled by it, or reused).
    counts = [summary_counts(result.outlines) for result in results]
    assert [sum(column) for column in zip(*counts)] == [5, 2 * 5 - 5]
    assert all(compiled + reused == 5 for compiled, reused in counts)
    scratch = project.path / ".pytest_cache/d/orcjit/tmp"
    assert list(scratch.iterdir()) == []  # no half-built entry left behind


# The key: change one input, and exactly the sources it shapes compile again.

TWO_SOURCES = """
def test_objects(orcjit_objects):
    assert len(orcjit_objects) == 2
"""


def copy_cxx(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    other = project.path / "bin" / "cxx-copy"
    other.write_bytes(project.cxx.read_bytes())
    other.chmod(0o755)


def patch_cc_version(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    # Same path, same compiler behind it; only what `--version` prints differs.
    real = project.cc.read_text().splitlines()[-1].removeprefix("exec ")
    project.cc.write_text(
        f'#!/bin/sh\necho "$@" >> "{project.log}"\n'
        f'if [ "$1" = --version ]; then echo "patched build 2"; fi\nexec {real}\n'
    )


def patch_tvm_ffi_version(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    # The runs are in-process: the plugin's Builder reads the version through this module.
    monkeypatch.setattr(compiler, "tvm_ffi_version", lambda: "0.0.0+other")


def edit_source(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("kernels/k.c", "int kc(void) { return 3; }\n")


def revert_source(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("kernels/k.c", "int kc(void) { return 2; }\n")


def no_change(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    pass


STEPS = [
    # (what changes, how, the options of this run, the sources compiled again)
    ("language standard", no_change, ["--orcjit-std=c++17"], ["k.cc"]),
    ("flags", no_change, ["--orcjit-std=c++17", "--orcjit-cflags=-O1 -g"], ["k.c", "k.cc"]),
    ("flag order", no_change, ["--orcjit-std=c++17", "--orcjit-cflags=-g -O1"], ["k.c", "k.cc"]),
    # From here on only the compiler differs from the first run's options.
    ("C++ compiler path", copy_cxx, ["--orcjit-cxx=bin/cxx-copy"], ["k.cc"]),
    ("C compiler --version", patch_cc_version, ["--orcjit-cxx=bin/cxx-copy"], ["k.c"]),
    ("tvm-ffi version", patch_tvm_ffi_version, ["--orcjit-cxx=bin/cxx-copy"], ["k.c", "k.cc"]),
    ("source content", edit_source, ["--orcjit-cxx=bin/cxx-copy"], ["k.c"]),
    # The object of the tvm-ffi version step is found again.
    ("source reverted", revert_source, ["--orcjit-cxx=bin/cxx-copy"], []),
]
"""Each step starts from the state the one before left (options are not cumulative)."""


def test_changing_a_key_input_recompiles_exactly_what_it_shapes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("kernels/k.cc", "int kcc() { return 1; }\n")  # C++: gets -std
    project.write("kernels/k.c", "int kc(void) { return 2; }\n")  # C: does not
    project.write("test_objects.py", TWO_SOURCES)
    project.ini("orcjit_sources = kernels/k.*")
    project.pytester.runpytest().assert_outcomes(passed=1)
    for what, change, options, expected in STEPS:
        project.reset_log()
        change(project, monkeypatch)
        result = project.pytester.runpytest(*options)
        result.assert_outcomes(passed=1)
        compiled = sorted(project.rel(f"kernels/{name}") for name in expected)
        assert project.compiles() == compiled, what
        counts = f"compiled {len(expected)}, reused {2 - len(expected)} from cache"
        result.stdout.fnmatch_lines([f"orcjit: {counts}*"])


def test_the_key_joins_its_inputs_unambiguously(tmp_path: Path) -> None:
    """["-DA", "B"] and ["-DAB"] and ["-DA B"] are three entries, not one."""
    store, built = cache.ObjectCache(tmp_path), []

    def build(out: Path) -> list[Path]:
        built.append(out)
        out.write_bytes(b"object")
        return []

    for inputs in (["-DA", "B"], ["-DAB"], ["-DA B"], ["-DA", "B", ""], ["-DA", "B"]):
        store.get(inputs, build)
    assert len(built) == 4  # the last lookup repeats the first


# Damage that test_plugin_cache.py does not cover.


def object_of(root: Path, symbol: str) -> Path:
    """The cached object that defines ``symbol`` (the name is in its string table)."""
    (found,) = [obj for obj in root.glob("*.o") if symbol.encode() in obj.read_bytes()]
    return found


def manifest_of(root: Path, source: str) -> Path:
    (found,) = [
        m for m in root.glob("*.manifest") if source in json.loads(m.read_text())["deps"][0]
    ]
    return found


def test_damaged_entries_are_rebuilt_then_reused_silently(project: Project) -> None:
    for name in ("alpha", "beta", "gamma"):
        project.write(f"kernels/{name}.c", f"int kernel_{name}(void) {{ return 1; }}\n")
    project.write("test_objects.py", TWO_SOURCES.replace("== 2", "== 3"))
    project.ini("orcjit_sources = kernels/*.c")
    project.pytester.runpytest().assert_outcomes(passed=1)
    root = project.path / ".pytest_cache/d/orcjit"
    alpha, beta = object_of(root, "kernel_alpha"), object_of(root, "kernel_beta")
    alpha.with_suffix(".json").write_text("{not json")  # the sidecar is foreign
    beta.write_bytes(b"")  # the object is empty
    manifest_of(root, "gamma.c").write_text("\0garbage")  # a miss, not a corrupt object
    project.reset_log()
    result = project.pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines_random(
        [
            f"*CacheWarning: {cache.MSG_CORRUPT.format(path=obj, reason='*')}"
            for obj in (alpha, beta)
        ]
    )
    assert project.compiles() == [project.rel(f"kernels/{n}.c") for n in ("alpha", "beta", "gamma")]
    # The rebuilt entries are whole: the next run reuses them, silently.
    project.reset_log()
    again = project.pytester.runpytest()
    again.assert_outcomes(passed=1)
    assert project.compiles() == []
    again.stdout.no_fnmatch_line("*CacheWarning*")


def test_corrupt_entry_under_xdist_is_rebuilt_once_with_a_warning(project: Project) -> None:
    for name in ("alpha", "beta"):
        project.write(f"kernels/{name}.c", f"int kernel_{name}(void) {{ return 1; }}\n")
    project.write("test_a.py", TWO_SOURCES)
    project.write("test_b.py", TWO_SOURCES)
    project.ini("orcjit_sources = kernels/*.c")
    project.pytester.runpytest().assert_outcomes(passed=2)
    alpha = object_of(project.path / ".pytest_cache/d/orcjit", "kernel_alpha")
    alpha.write_bytes(alpha.read_bytes()[:64])
    project.reset_log()
    result = project.pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=2)
    # Both workers need the entry: the first to lock it discards and rebuilds it, the
    # other then finds the rebuilt one.
    assert project.compiles() == [project.rel("kernels/alpha.c")]
    result.stdout.fnmatch_lines(
        [f"*CacheWarning: {cache.MSG_CORRUPT.format(path=alpha, reason='*')}"]
    )


def test_foreign_file_under_a_source_texts_name_is_replaced(project: Project) -> None:
    """orcjit_compile(text) stores the text under its hash; other text found there is not
    compiled in its place."""
    text = "int answer(void) { return 42; }\n"
    project.write(
        "test_text.py",
        "def test_text(orcjit_compile):\n"
        f"    print('OBJECT', orcjit_compile({text!r}, language='c'))\n",
    )
    project.ini()
    first = project.pytester.runpytest("-s")
    first.assert_outcomes(passed=1)
    (stored,) = (project.path / ".pytest_cache/d/orcjit/sources").glob("*.c")
    stored.write_text("int answer(void) { return 666; }\n")
    project.reset_log()
    second = project.pytester.runpytest("-s")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(
        [f"*CacheWarning: {cache.MSG_CORRUPT.format(path=stored, reason='*')}"]
    )
    assert stored.read_text() == text
    assert project.compiles() == []  # the object of the right text is found again
    objects = re.findall(r"OBJECT (\S+)", first.stdout.str() + second.stdout.str())
    assert len(objects) == 2 and objects[0] == objects[1]
