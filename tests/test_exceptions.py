"""C++ exceptions cross the objects of a library, whichever object keeps shared inline code."""

from __future__ import annotations

import pytest

from pytest_orcjit import ExecutionSession


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")], ids=["a-first", "b-first"])
def test_exception_caught_in_another_object(
    session: ExecutionSession, kernels, toolchain, order: tuple[str, str]
) -> None:
    """The throwing copy of checked_half() lives in whichever object was linked first."""
    cxx, opt = toolchain
    objects = [kernels.object(f"shared_inline_{name}.cc", opt, compiler=cxx) for name in order]
    module = session.load_module(objects)
    assert module.half_b(8) == 4
    assert module.half_b(7) == -1  # thrown and caught inside the library
    with pytest.raises(RuntimeError, match="odd value 7"):
        module.half_a(7)  # thrown inside, reaches Python through the TVM-FFI wrapper


def test_exceptions_unwind_through_every_load(
    session: ExecutionSession, kernels, toolchain
) -> None:
    """Later loads link copies of the graphs the first loads prepared (csrc/graph_copy.h), one per
    object and set of inline functions taken from the objects before it: both orders, twice."""
    cxx, opt = toolchain
    objects = {name: kernels.object(f"shared_inline_{name}.cc", opt, compiler=cxx) for name in "ab"}
    for order in ["ab", "ba", "ab", "ba"]:
        module = session.load_module([objects[name] for name in order])
        assert module.half_b(7) == -1
        with pytest.raises(RuntimeError, match="odd value 7"):
            module.half_a(7)


def test_kernel_errors_from_every_object_reach_python(session: ExecutionSession, kernels) -> None:
    lib = session.create_library()
    lib.add(kernels.object("math_ops.cc"))
    lib.add(kernels.object("throw_ops.cc"))
    lib.add(kernels.object("string_ops.cc"))
    with pytest.raises(TypeError):
        lib.get_function("test_add")("not", "ints")  # argument conversion in a later object
