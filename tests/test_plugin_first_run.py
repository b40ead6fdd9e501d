"""What a first run meets: each test here is a papercut a new user hit, now fixed.

Run the way users run pytest (pytester); each asserts the message or
behaviour a user sees.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from plugin_helpers import C_ADD, REAL_CXX, TVM_ADD, Project, core_available, make_project

from pytest_orcjit import plugin, settings

needs_core = pytest.mark.skipif(not core_available(), reason="the native core is not built")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(pytester, monkeypatch)


def test_compiler_path_after_a_space_is_a_usage_error(project: Project) -> None:
    # pytest takes the path for a test path when it picks the rootdir, before plugins load.
    project.write("kernels/add.cc", TVM_ADD)
    project.ini("orcjit_sources = kernels/add.cc", compilers=False)
    result = project.pytester.runpytest("--orcjit-cxx", str(project.cxx))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*write --orcjit-cxx={project.cxx} (with '=')*"])
    # The '=' form works, and a bare compiler name after a space is fine too.
    project.write("test_ok.py", "def test_ok():\n    pass\n")
    project.pytester.runpytest(f"--orcjit-cxx={project.cxx}").assert_outcomes(passed=1)
    project.pytester.runpytest("--orcjit-cxx", REAL_CXX).assert_outcomes(passed=1)


@needs_core
def test_no_sources_configured_says_so(project: Project) -> None:
    project.ini()
    project.write("test_vadd.py", "def test_vadd(orcjit_lib):\n    orcjit_lib.vadd(1, 2)\n")
    result = project.pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- orcjit -*", f"*{plugin.MSG_NO_SOURCES[:60]}*"])


def test_a_broken_source_shows_its_diagnostics_once(project: Project) -> None:
    project.write("kernels/broken.c", "int broken(void) { return undeclared_name; }\n")
    tests = "".join(f"def test_{n}(orcjit_objects):\n    pass\n" for n in range(5))
    project.write("test_many.py", tests)
    project.ini("orcjit_sources = kernels/broken.c", isolation="fork")
    result = project.pytester.runpytest()
    result.assert_outcomes(errors=5)
    # The compiler's diagnostics appear once, in the first test's error (the short summary at
    # the end may repeat its first line, as wide as the terminal is).
    errors = result.stdout.str().partition("short test summary info")[0]
    assert errors.count("undeclared identifier 'undeclared_name'") == 1
    result.stdout.fnmatch_lines(
        ["*kernels/broken.c failed to compile (its diagnostics are in the error of *test_0)*"]
    )


def test_listing_fixtures_compiles_nothing(project: Project) -> None:
    project.write("kernels/add.c", C_ADD)
    project.write("test_add.py", "def test_add(orcjit_objects):\n    pass\n")
    project.ini("orcjit_sources = kernels/add.c")
    for option in ("--fixtures", "--fixtures-per-test", "--collect-only"):
        project.pytester.runpytest(option)
        assert project.compiles() == [], option


def test_without_the_cache_provider_no_temporary_folder_is_left(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    project.write("kernels/add.c", C_ADD)
    project.write("test_add.py", "def test_add(orcjit_objects):\n    assert orcjit_objects\n")
    project.ini("orcjit_sources = kernels/add.c", isolation="fork")
    project.pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert [name for name in os.listdir(temp) if name.startswith("pytest-orcjit")] == []


@needs_core
def test_summary_counts_forked_inline_compiles_and_marker_sources(project: Project) -> None:
    project.write("kernels/add.c", C_ADD)
    project.write("extra/mul.c", "int mul(int a, int b) { return a * b; }\n")
    project.write(
        "test_counts.py",
        "import pytest\n"
        "def test_global(orcjit_objects):\n    pass\n"
        "@pytest.mark.orcjit(sources=['extra/mul.c'])\n"
        "def test_marker(orcjit_objects):\n    pass\n"
        "def test_inline(orcjit_compile):\n"
        "    orcjit_compile('int sub(int a, int b) { return a - b; }\\n', language='c')\n",
    )
    project.ini("orcjit_sources = kernels/add.c", isolation="fork")
    result = project.pytester.runpytest()
    result.assert_outcomes(passed=3)
    # kernels/add.c, extra/mul.c and the forked test's inline source: three compiles.
    result.stdout.fnmatch_lines(["orcjit: compiled 3, reused 0 from cache*"])
    result.stdout.fnmatch_lines(["orcjit: *, 1 orcjit_sources"])


def test_summary_counts_each_object_once_under_xdist(project: Project) -> None:
    pytest.importorskip("xdist")
    project.write("kernels/add.c", C_ADD)
    tests = "".join(f"def test_{n}(orcjit_objects):\n    pass\n" for n in range(6))
    project.write("test_many.py", tests)
    project.ini("orcjit_sources = kernels/add.c")
    project.pytester.runpytest("-n", "2").assert_outcomes(passed=6)
    warm = project.pytester.runpytest("-n", "2")
    warm.stdout.fnmatch_lines(["orcjit: compiled 0, reused 1 from cache*"])


def test_inline_compile_error_shows_the_test_line_and_the_diagnostics(project: Project) -> None:
    project.ini()
    project.write(
        "test_inline.py",
        "def test_inline(orcjit_compile):\n"
        "    orcjit_compile('int f(void) { return nope; }\\n', language='c')\n",
    )
    result = project.pytester.runpytest()
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "orcjit_compile('int f(void)" in output  # the test's own line
    assert "nope" in output
    assert "pytest_orcjit/plugin.py" not in output and "compiler.py" not in output


def test_toml_list_of_flags_needs_no_string(project: Project) -> None:
    project.write("kernels/add.c", C_ADD)
    project.write("test_add.py", "def test_add(orcjit_objects):\n    pass\n")
    (project.path / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n"
        f"orcjit_cxx = '{project.cxx}'\norcjit_cc = '{project.cc}'\n"
        "orcjit_sources = ['kernels/add.c']\norcjit_cflags = ['-O1', '-DNAME=a b']\n"
    )
    # pytest 9 warns about a non-string value for a "string" ini option (an error here).
    removed = "PytestRemovedIn10Warning"
    strict = ["-W", f"error::pytest.{removed}"] if hasattr(pytest, removed) else []
    result = project.pytester.runpytest(*strict)
    result.assert_outcomes(passed=1)
    assert "-DNAME=a b" in project.runs()[-1] or "'-DNAME=a b'" in "".join(project.runs())


def test_timeout_without_forking_is_said_once_at_start(project: Project) -> None:
    project.ini("orcjit_timeout = 5", isolation="none")
    project.write("test_ok.py", "def test_ok():\n    pass\n")
    result = project.pytester.runpytest()
    result.assert_outcomes(passed=1, warnings=1)
    expected = settings.MSG_TIMEOUT_IN_PROCESS.format(
        origin="ini orcjit_timeout", isolation="ini orcjit_isolation"
    )
    result.stdout.fnmatch_lines([f"*{expected}*"])
