"""The JIT fixtures end to end: orcjit_lib, orcjit_session, orcjit_objects, orcjit_compile."""

from __future__ import annotations

import pytest
from plugin_helpers import TVM_ADD, Project, core_available, make_project

pytestmark = pytest.mark.skipif(not core_available(), reason="the native core is not built")

KERNEL = """\
#include <tvm/ffi/function.h>
static int counter = 0;
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_add, [](int64_t a, int64_t b) { return a + b; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(bump, []() { return ++counter; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(crash, []() { volatile int* p = nullptr; return *p; });
"""

MISSING = """\
#include <tvm/ffi/function.h>
extern "C" int orcjit_missing_function();
TVM_FFI_DLL_EXPORT_TYPED_FUNC(use_missing, []() { return orcjit_missing_function(); });
"""

TESTS = f'''
import pytest

def test_add(orcjit_lib):
    assert orcjit_lib.get_function("test_add")(1, 2) == 3
    assert orcjit_lib.test_add(40, 2) == 42

@pytest.mark.parametrize("n", range(3))
def test_static_state_is_fresh_in_every_test(orcjit_lib, n):
    assert orcjit_lib.bump() == 1

def test_objects_and_session(orcjit_session, orcjit_objects, orcjit_lib):
    assert len(orcjit_objects) == 1 and orcjit_objects[0].suffix == ".o"
    with orcjit_session.create_library("second") as lib:
        lib.add(orcjit_objects[0])
        assert lib.bump() == 1 and orcjit_lib.bump() == 1

def test_compile_inside_a_test(orcjit_session, orcjit_compile):
    with orcjit_session.create_library() as lib:
        lib.add(orcjit_compile("""{TVM_ADD}"""))
        assert lib.test_add(2, 3) == 5

@pytest.mark.orcjit(sources=["kernels/missing.cc"])
def test_undefined_symbol(orcjit_lib):
    orcjit_lib.use_missing()
'''


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(pytester, monkeypatch)
    project.write("kernels/ops.cc", KERNEL)
    project.write("kernels/missing.cc", MISSING)
    project.write("test_jit.py", TESTS)
    return project


@pytest.mark.parametrize("isolation", ["none", "fork"])
def test_fixtures_load_and_call_kernels(project: Project, isolation: str) -> None:
    project.ini("orcjit_sources = kernels/ops.cc", isolation=isolation)
    result = project.pytester.runpytest_subprocess()
    result.assert_outcomes(passed=6, failed=1)
    # A load error is the test's failure with the native message.
    result.stdout.fnmatch_lines(["FAILED test_jit.py::test_undefined_symbol*"])
    assert "orcjit_missing_function" in result.stdout.str()


def test_a_crashing_kernel_fails_one_forked_test(project: Project) -> None:
    project.write(
        "test_crash.py",
        "def test_crash(orcjit_lib):\n    orcjit_lib.crash()\n\n"
        "def test_after(orcjit_lib):\n    assert orcjit_lib.bump() == 1\n",
    )
    project.ini("orcjit_sources = kernels/ops.cc", isolation=None)  # default: fork
    result = project.pytester.runpytest_subprocess("test_crash.py")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*SIGSEGV*"])
