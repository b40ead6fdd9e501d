"""Load and link errors through the plugin name the source the user wrote, not the cache file."""

from __future__ import annotations

import re

import pytest
from plugin_helpers import Project, core_available, make_project

pytestmark = pytest.mark.skipif(not core_available(), reason="the native core is not built")

OPS = """\
#include <tvm/ffi/function.h>
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_add, [](int64_t a, int64_t b) { return a + b; });
"""

OPS_AGAIN = """\
#include <tvm/ffi/function.h>
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_add, [](int64_t a, int64_t b) { return a - b; });
"""

MISSING = """\
#include <tvm/ffi/function.h>
extern "C" int orcjit_missing_function();
TVM_FFI_DLL_EXPORT_TYPED_FUNC(use_missing, []() { return orcjit_missing_function(); });
"""

TESTS = """
import pytest

@pytest.mark.orcjit(sources=["kernels/ops.cc"])
def test_missing_export(orcjit_lib):
    orcjit_lib.no_such_function()

@pytest.mark.orcjit(sources=["kernels/ops.cc", "kernels/ops_again.cc"])
def test_duplicate_symbol(orcjit_lib):
    pass

@pytest.mark.orcjit(sources=["kernels/missing.cc"])
def test_undefined_symbol(orcjit_lib):
    orcjit_lib.use_missing()

@pytest.mark.orcjit(sources=["kernels/ops.cc"])
def test_caught_in_the_test(orcjit_session, orcjit_objects):
    lib = orcjit_session.create_library()
    lib.add(orcjit_objects[0])
    with pytest.raises(ValueError, match="duplicate symbol") as raised:
        lib.add(orcjit_objects[0])
    raise AssertionError("caught: " + str(raised.value))
"""

CACHED = r"\.pytest_cache/d/orcjit/[0-9a-f]{64}\.o"
"""A cache file, relative to the rootdir."""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(pytester, monkeypatch)
    project.write("kernels/ops.cc", OPS)
    project.write("kernels/ops_again.cc", OPS_AGAIN)
    project.write("kernels/missing.cc", MISSING)
    project.write("test_messages.py", TESTS)
    return project


def error_lines(output: str, test: str) -> list[str]:
    """The ``E`` lines of ``test``'s failure section."""
    section = re.search(rf"_+ (?:ERROR at setup of )?{test} _+\n(.*?)(?=\n_{{3,}} |\n=+ )", output,
                        re.S)  # fmt: skip
    assert section, f"no section for {test} in:\n{output}"
    return [line for line in section.group(1).splitlines() if line.startswith("E ")]


@pytest.mark.parametrize("isolation", ["none", "fork"])
def test_errors_name_the_source_with_the_cache_file_in_parentheses(
    project: Project, isolation: str
) -> None:
    project.ini(isolation=isolation)
    result = project.pytester.runpytest_subprocess()
    result.assert_outcomes(failed=3, errors=1)
    output = result.stdout.str()
    expected = {
        "test_missing_export": rf"has no function 'no_such_function': none of its objects "
        rf"\(kernels/ops\.cc \({CACHED}\)\) defines",
        "test_duplicate_symbol": rf"duplicate symbol: 'kernels/ops_again\.cc \({CACHED}\)' "
        rf"defines the TVM-FFI export 'test_add'",
        "test_undefined_symbol": rf"undefined symbol 'orcjit_missing_function', referenced by "
        rf"kernels/missing\.cc \({CACHED}\)",
        "test_caught_in_the_test": rf"caught: duplicate symbol: 'kernels/ops\.cc \({CACHED}\)'",
    }
    for test, pattern in expected.items():
        text = "\n".join(error_lines(output, test))
        assert re.search(pattern, text), f"{test}: {pattern!r} not in\n{text}"
        # The cache file appears only in parentheses after its source, never on its own.
        assert not re.search(rf"(?<!\()/?[\w/.-]*{CACHED}", text), text
        assert str(project.path) not in text
