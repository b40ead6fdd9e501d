"""Shared libraries for kernels through the plugin: -fopenmp, --orcjit-libs, orcjit_libs, libs=."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_helpers import Project, core_available, make_project

from pytest_orcjit import settings, validators

pytestmark = pytest.mark.skipif(not core_available(), reason="the native core is not built")

OPENMP_KERNEL = (Path(__file__).parent / "kernels" / "openmp_sum.cc").read_text()

OPENMP_TEST = """
def test_openmp(orcjit_lib):
    assert orcjit_lib.openmp_threads() == 2
    assert orcjit_lib.openmp_sum(1000) == 499500
"""

USES_OPENMP = """\
#include <tvm/ffi/function.h>
extern "C" int omp_get_max_threads();
TVM_FFI_DLL_EXPORT_TYPED_FUNC(max_threads, []() { return int64_t(omp_get_max_threads()); });
"""
"""Calls the OpenMP runtime without -fopenmp: linking needs the runtime loaded."""

LIBS_TESTS = """
import pytest

def test_without_libs(orcjit_lib):
    assert orcjit_lib.max_threads() >= 1

@pytest.mark.orcjit(libs=["gomp"])
def test_marker_libs(orcjit_lib):
    assert orcjit_lib.max_threads() >= 1
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(pytester, monkeypatch)


def compiler_ini(project: Project, cxx: str, *lines: str, isolation: str | None) -> None:
    """pytest.ini with a logging wrapper of ``cxx`` (the plugin must tell clang from gcc)."""
    wrapper = project.wrapper("kernel-cxx", cxx)
    project.ini(f"orcjit_cxx = {wrapper}", *lines, compilers=False, isolation=isolation)


@pytest.mark.parametrize("cxx", ["clang++-22", "g++"])
@pytest.mark.parametrize("where", ["cli", "marker"])
def test_fopenmp_in_the_flags_loads_the_compilers_runtime(
    project: Project, cxx: str, where: str
) -> None:
    project.write("kernels/openmp_sum.cc", OPENMP_KERNEL)
    if where == "cli":  # forked, the default isolation
        project.write("test_openmp.py", OPENMP_TEST)
        compiler_ini(project, cxx, "orcjit_sources = kernels/openmp_sum.cc", isolation=None)
        result = project.pytester.runpytest_subprocess("--orcjit-cflags=-fopenmp")
    else:  # in-process
        marker = '@pytest.mark.orcjit(sources=["kernels/openmp_sum.cc"], cflags=["-fopenmp"])'
        project.write("test_openmp.py", f"import pytest\n{marker}{OPENMP_TEST}")
        compiler_ini(project, cxx, isolation="none")
        result = project.pytester.runpytest_subprocess()
    # No conftest loads the runtime: the plugin does, for the compiler that compiled the kernel.
    result.assert_outcomes(passed=1)


def test_libs_marker_loads_them_and_without_them_the_error_says_how(project: Project) -> None:
    project.write("kernels/uses_openmp.cc", USES_OPENMP)
    project.write("test_libs.py", LIBS_TESTS)
    compiler_ini(project, "g++", "orcjit_sources = kernels/uses_openmp.cc", isolation="none")
    result = project.pytester.runpytest_subprocess()
    # In file order: the runtime is not loaded for the first test, then the marker loads it.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*undefined symbol 'omp_get_max_threads'*(an OpenMP runtime, libomp for clang or "
            "libgomp for gcc)*--orcjit-libs omp*",
            "FAILED test_libs.py::test_without_libs*",
        ]
    )


@pytest.mark.parametrize("where", ["cli", "ini"])
def test_orcjit_libs_option_loads_them_for_forked_tests(project: Project, where: str) -> None:
    project.write("kernels/uses_openmp.cc", USES_OPENMP)
    project.write("test_libs.py", LIBS_TESTS)
    ini = ["orcjit_libs = omp"] if where == "ini" else []
    compiler_ini(project, "g++", "orcjit_sources = kernels/uses_openmp.cc", *ini, isolation=None)
    args = ["--orcjit-libs=omp"] if where == "cli" else []
    result = project.pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)


def test_an_unknown_library_is_a_usage_error_naming_its_origin(project: Project) -> None:
    project.write("test_nothing.py", "def test_nothing():\n    pass\n")
    project.ini("orcjit_libs = orcjit_no_such_library")
    result = project.pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*orcjit: cannot load the shared library 'orcjit_no_such_library' from ini orcjit_libs:*"]
    )


def test_a_bad_marker_library_fails_its_test_naming_the_marker(project: Project) -> None:
    project.write("kernels/uses_openmp.cc", USES_OPENMP)
    project.write(
        "test_bad.py",
        """
import pytest

@pytest.mark.orcjit(libs=["orcjit_no_such_library"])
def test_unknown(orcjit_lib):
    pass

@pytest.mark.orcjit(libs=42)
def test_not_a_list(orcjit_lib):
    pass
""",
    )
    compiler_ini(project, "g++", "orcjit_sources = kernels/uses_openmp.cc", isolation="none")
    result = project.pytester.runpytest_subprocess()
    result.assert_outcomes(errors=2)
    message = settings.MSG_LIBRARY.format(
        name="orcjit_no_such_library", origin="marker on test_bad.py::test_unknown", error="*"
    )
    result.stdout.fnmatch_lines([f"*{message}*"])
    invalid = validators.MSG_INVALID.format(
        what="libs", value=42, origin="marker on test_bad.py::test_not_a_list", expected="*"
    )
    result.stdout.fnmatch_lines([f"*{invalid}*"])
