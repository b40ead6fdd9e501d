"""The plugin's options, ini twins, precedence, validators and marker (no JIT needed)."""

from __future__ import annotations

import os
import sys

import pytest
from plugin_helpers import C_ADD, Project, make_project

from pytest_orcjit import compile_step, plugin, settings, validators


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(pytester, monkeypatch)


SHOW_SETTINGS = """
import os
from pytest_orcjit import run_state

def test_show(request):
    s = request.config.stash[run_state.STATE].settings
    print("SETTINGS", s.jobs, s.std, s.cflags, s.isolation, s.timeout, s.cxx.origin)
"""


def test_help_lists_every_option_and_ini_twin(project: Project) -> None:
    result = project.pytester.runpytest("--help")
    # Each option and its ini twin appear, with the same help text.
    for name, text, _ in settings.OPTIONS:
        result.stdout.fnmatch_lines([f"*{settings.cli_flag(name)}*", f"*orcjit_{name} (*"])
        assert result.stdout.str().count(text[:30]) >= 2, name


def test_marker_is_registered(project: Project) -> None:
    result = project.pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.orcjit(sources=*"])


@pytest.mark.parametrize(
    ("ini", "args", "expected"),
    [
        ([], [], f"SETTINGS {os.cpu_count()} c++20 () fork None ini orcjit_cxx"),
        (
            ["orcjit_jobs = 3", "orcjit_std = c++17", "orcjit_cflags = -O1 -g",
             "orcjit_isolation = none", "orcjit_timeout = 7"],
            [],
            "SETTINGS 3 c++17 ('-O1', '-g') none 7.0 ini orcjit_cxx",
        ),
        (
            ["orcjit_jobs = 3", "orcjit_std = c++17", "orcjit_cflags = -O1",
             "orcjit_isolation = none", "orcjit_timeout = 7"],
            ["--orcjit-jobs=2", "--orcjit-std=c++23", "--orcjit-cflags=-O3 -DX='a b'",
             "--orcjit-isolation=fork", "--orcjit-timeout=0"],
            "SETTINGS 2 c++23 ('-O3', '-DX=a b') fork None ini orcjit_cxx",
        ),
    ],
    ids=["defaults", "ini", "cli-wins"],
)  # fmt: skip
def test_precedence_cli_over_ini_over_default(
    project: Project, ini: list[str], args: list[str], expected: str
) -> None:
    project.ini(*ini, isolation=None)
    project.write("test_show.py", SHOW_SETTINGS)
    result = project.pytester.runpytest("-s", "-p", "no:cacheprovider", *args)
    result.stdout.fnmatch_lines([f"*{expected}"])
    assert result.ret == 0


@pytest.mark.parametrize(
    ("where", "value", "what", "origin", "expected"),
    [
        ("cli", "0", "jobs", "--orcjit-jobs", "a positive integer"),
        ("ini", "x", "jobs", "ini orcjit_jobs", "a positive integer"),
        ("cli", "-1", "timeout", "--orcjit-timeout", "seconds >= 0"),
        ("ini", "soon", "timeout", "ini orcjit_timeout", "seconds >= 0"),
        ("ini", "thread", "isolation", "ini orcjit_isolation", "fork or none"),
        ("ini", "c++ 20", "-std", "ini orcjit_std", "a name"),
    ],
)
def test_invalid_value_names_its_origin(
    project: Project, where: str, value: str, what: str, origin: str, expected: str
) -> None:
    name = origin.rsplit("_", 1)[-1].rsplit("-", 1)[-1]
    project.ini(f"orcjit_{name} = {value}" if where == "ini" else "", isolation=None)
    project.write("test_nothing.py", "def test_nothing():\n    pass\n")
    result = project.pytester.runpytest(*([f"--orcjit-{name}={value}"] if where == "cli" else []))
    message = validators.MSG_INVALID.format(
        what=what, value=value, origin=origin, expected=expected
    )
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_unbalanced_cflags_are_a_usage_error(project: Project) -> None:
    project.ini()
    result = project.pytester.runpytest("--orcjit-cflags=-DX='oops")
    message = 'ERROR: orcjit: invalid flags "-DX=\'oops" from --orcjit-cflags: No closing quotation'
    result.stderr.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize("where", ["cli", "ini"])
def test_glob_matching_nothing_is_a_usage_error(project: Project, where: str) -> None:
    project.ini("orcjit_sources = kernels/*.cc" if where == "ini" else "")
    project.write("test_nothing.py", "def test_nothing():\n    pass\n")
    args = ["--orcjit-sources", "kernels/*.cc"] if where == "cli" else []
    result = project.pytester.runpytest(*args)
    origin = "--orcjit-sources" if where == "cli" else "ini orcjit_sources"
    message = validators.MSG_EMPTY_GLOB.format(origin=origin, glob="kernels/*.cc", base="*")
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_test_path_after_sources_is_explained(project: Project) -> None:
    project.write("kernels/a.c", C_ADD)
    project.write("tests/test_nothing.py", "def test_nothing():\n    pass\n")
    project.ini()
    result = project.pytester.runpytest("--orcjit-sources", "kernels/*.c", "tests")
    message = validators.MSG_DIRECTORY.format(origin="--orcjit-sources", glob="tests")
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result = project.pytester.runpytest("tests", "--orcjit-sources", "kernels/*.c")
    result.assert_outcomes(passed=1)


def test_unknown_source_kind_is_a_usage_error(project: Project) -> None:
    project.write("kernels/notes.txt", "hello\n")
    project.ini("orcjit_sources = kernels/*")
    result = project.pytester.runpytest()
    message = "ERROR: orcjit: ini orcjit_sources: *notes.txt: unknown source kind*"
    result.stderr.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize(
    ("how", "origin"),
    [("cli", "--orcjit-cxx"), ("ini", "ini orcjit_cxx"), ("env", "$CXX")],
)
def test_missing_compiler_is_one_usage_error(
    project: Project, monkeypatch: pytest.MonkeyPatch, how: str, origin: str
) -> None:
    project.write("kernels/add.c", C_ADD)
    missing = str(project.path / "no-such-clang++")
    project.ini("orcjit_sources = kernels/*.c", f"orcjit_cxx = {missing}" if how == "ini" else "",
                compilers=False)  # fmt: skip
    if how == "env":
        monkeypatch.setenv("CXX", missing)
    result = project.pytester.runpytest(*([f"--orcjit-cxx={missing}"] if how == "cli" else []))
    message = compile_step.MSG_NO_COMPILER.format(
        kind="C++", command=missing, origin=origin, reason="*", flag="--orcjit-cxx",
        ini="orcjit_cxx",
    )  # fmt: skip
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_compiler_that_fails_to_run_is_a_usage_error(project: Project) -> None:
    broken = project.wrapper("broken", "", status=3)
    project.write("kernels/add.c", C_ADD)
    project.ini("orcjit_sources = kernels/*.c", compilers=False)
    result = project.pytester.runpytest(f"--orcjit-cxx={broken}")
    message = "ERROR: orcjit: cannot use the C++ compiler*exited 3*--orcjit-cxx*"
    result.stderr.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_compiler_is_checked_only_when_needed(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No sources and no compiler asked for: a broken $CXX does not stop unrelated tests.
    monkeypatch.setenv("CXX", str(project.path / "no-such-clang++"))
    project.ini(compilers=False)
    project.write("test_plain.py", "def test_plain():\n    pass\n")
    result = project.pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert project.runs() == []


def test_header_names_compiler_llvm_tvm_ffi_and_sources(project: Project) -> None:
    project.write("kernels/a.c", C_ADD)
    project.write("kernels/b.c", C_ADD)
    project.ini("orcjit_sources =\n    kernels/a.c\n    kernels/*.c")
    result = project.pytester.runpytest()
    # a.c is named twice but counted once.
    result.stdout.fnmatch_lines([f"orcjit: {project.cxx} (*), LLVM *, tvm-ffi *, 2 orcjit_sources"])


def test_header_without_sources_defers_the_compiler(project: Project) -> None:
    project.ini(compilers=False)
    result = project.pytester.runpytest()
    result.stdout.fnmatch_lines(
        [f"orcjit: {plugin.MSG_HEADER_NO_COMPILER}, LLVM *, 0 orcjit_sources"]
    )


def test_plugin_can_be_disabled(project: Project) -> None:
    project.ini("orcjit_sources = nothing/*.cc")  # would be a usage error if loaded
    project.write("test_plain.py", "def test_plain():\n    pass\n")
    result = project.pytester.runpytest("-p", "no:orcjit")
    result.assert_outcomes(passed=1)


def test_importing_the_plugin_does_not_load_the_native_core(project: Project) -> None:
    code = "import sys, pytest_orcjit.plugin; print('pytest_orcjit.api' in sys.modules)"
    result = project.pytester.run(sys.executable, "-c", code)
    result.stdout.fnmatch_lines(["False"])
