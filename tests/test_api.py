"""The Python API: sessions, libraries, load_module, and values crossing into JIT code.

Every kernel lives in tests/kernels; the ``kernels`` fixture (conftest.py)
compiles it on first use. Tests parametrized with ``toolchain`` run once per
(compiler, optimization level) pair.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest
import tvm_ffi

import pytest_orcjit
from pytest_orcjit import ExecutionSession, Library, create_session, default_session
from pytest_orcjit.api import MSG_OBJECT_TYPE, llvm_version


def object_type(name: str) -> str:
    """The pattern of the TypeError for an object given as a ``name``."""
    return re.escape(MSG_OBJECT_TYPE.format(type=name))


# --- sessions and libraries -------------------------------------------------------------------


def test_create_session_returns_independent_sessions() -> None:
    first, second = create_session(), create_session()
    assert isinstance(first, ExecutionSession)
    assert not first.same_as(second)  # each call builds a new JIT
    first.close()
    second.close()


def test_default_session_is_one_session_for_all_threads() -> None:
    seen: list[ExecutionSession] = []
    threads = [threading.Thread(target=lambda: seen.append(default_session())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert all(session.same_as(default_session()) for session in seen)


def test_library_names_given_and_generated(session: ExecutionSession) -> None:
    named = session.create_library("kernels_under_test")
    assert isinstance(named, Library)
    assert named.name == "kernels_under_test"
    first, second = session.create_library(), session.create_library()
    assert first.name.startswith("lib")
    assert first.name != second.name  # generated names are unique
    twin = session.create_library("kernels_under_test")  # a name only labels a library
    assert twin.name == named.name


def test_seed_flow(session: ExecutionSession, kernels) -> None:
    """The issue's example: a path, then bytes, added incrementally to one library."""
    lib1 = session.create_library("lib1")
    lib2 = session.create_library("lib2")
    lib1.add(str(kernels.object("math_ops.cc")))
    lib1.add(kernels.read("string_ops.cc"))
    lib2.add(str(kernels.object("implementation_v2.cc")))
    add = lib1.get_function("test_add")
    assert isinstance(add, tvm_ffi.Function)
    assert add(1, 2) == 3
    assert lib1.get_function("test_concat")("a", "b") == "ab"
    assert lib2.get_function("test_add")(1, 2) == 1003


@pytest.mark.parametrize("kind", ["str", "Path", "bytes", "bytearray", "memoryview"])
def test_add_accepts_paths_and_bytes(session: ExecutionSession, kernels, kind: str) -> None:
    path = kernels.object("math_ops.cc")
    source = {
        "str": str(path),
        "Path": Path(path),
        "bytes": path.read_bytes(),
        "bytearray": bytearray(path.read_bytes()),
        "memoryview": memoryview(path.read_bytes()),
    }[kind]
    lib = session.create_library()
    lib.add(source)
    assert lib.get_function("test_mul")(6, 7) == 42


def test_add_rejects_other_types(session: ExecutionSession) -> None:
    lib = session.create_library()
    with pytest.raises(TypeError, match=object_type("int")):
        lib.add(42)  # type: ignore[arg-type]


def test_objects_added_after_a_call_are_linked_at_the_next_lookup(
    session: ExecutionSession, kernels
) -> None:
    lib = session.create_library()
    lib.add(kernels.object("math_ops.cc"))
    assert lib.get_function("test_add")(2, 2) == 4
    lib.add(kernels.object("string_ops.cc"))
    assert lib.get_function("test_upper")("abc") == "ABC"
    assert lib.get_function("test_add")(3, 3) == 6  # earlier exports still work


def test_functions_as_attributes(session: ExecutionSession, kernels) -> None:
    lib = session.create_library("attrs")
    lib.add(kernels.object("math_ops.cc"))
    assert lib.test_add(20, 22) == 42
    with pytest.raises(AttributeError):
        lib._private  # noqa: B018  (underscore names are never looked up in the JIT)


def test_session_as_context_manager_closes(kernels) -> None:
    with create_session() as session:
        lib = session.create_library()
        lib.add(kernels.object("math_ops.cc"))
        add = lib.get_function("test_add")
        assert add(1, 1) == 2
    with pytest.raises(RuntimeError, match="closed"):
        session.create_library()


def test_llvm_version_is_a_version_string() -> None:
    major = int(llvm_version().split(".")[0])
    assert major >= 18


def test_package_exports_the_api() -> None:
    assert pytest_orcjit.create_session is create_session
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        pytest_orcjit.nothing_here  # noqa: B018


# --- load_module (the apache-tvm-ffi-orcjit shape) --------------------------------------------


def test_load_module_path_returns_a_tvm_ffi_module(session: ExecutionSession, kernels) -> None:
    module = session.load_module(kernels.object("math_ops.cc"), name="math")
    assert isinstance(module, tvm_ffi.Module)
    assert module.test_add(1, 2) == 3
    assert module.test_mul(3, 4) == 12


def test_load_module_three_in_memory_objects_with_static_constructors(
    session: ExecutionSession, kernels
) -> None:
    """Each part's constructor must have run; each part calls the next (1 -> 2 -> 3 -> 1)."""
    parts = [kernels.read("multi_part.cc", f"-DPART={part}") for part in (1, 2, 3)]
    module = session.load_module(parts)
    assert module.test_part_1() == 12
    assert module.test_part_2() == 23
    assert module.test_part_3() == 31


def test_load_module_mixed_paths_and_bytes(session: ExecutionSession, kernels) -> None:
    module = session.load_module(
        [
            kernels.object("multi_part.cc", "-DPART=1"),
            kernels.read("multi_part.cc", "-DPART=2"),
            str(kernels.object("multi_part.cc", "-DPART=3")),
            kernels.read("math_ops.cc"),
        ]
    )
    assert [module.test_part_1(), module.test_part_2(), module.test_part_3()] == [12, 23, 31]
    assert module.test_add(2, 3) == 5


def test_load_module_takes_any_iterable_of_objects(session: ExecutionSession, kernels) -> None:
    paths = [kernels.object("multi_part.cc", f"-DPART={part}") for part in (1, 2, 3)]
    module = session.load_module(path for path in paths)  # e.g. Path.glob's generator
    assert module.test_part_3() == 31


def test_load_module_rejects_no_objects_and_non_objects(session: ExecutionSession) -> None:
    nothing: list[str] = []
    for empty in (nothing, tuple(nothing), iter(nothing)):
        with pytest.raises(ValueError, match=r"empty list of objects.*did a glob match nothing"):
            session.load_module(empty)
    with pytest.raises(TypeError, match=object_type("int")):
        session.load_module(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=object_type("NoneType")):
        session.load_module([None])  # type: ignore[list-item]


def test_load_module_on_default_session(kernels) -> None:
    module = default_session().load_module(kernels.read("math_ops.cc"))
    assert module.test_add(40, 2) == 42


def test_load_module_missing_function_is_attribute_error(
    session: ExecutionSession, kernels
) -> None:
    module = session.load_module(kernels.object("math_ops.cc"))
    with pytest.raises(AttributeError, match="test_nothing"):
        module.test_nothing  # noqa: B018


# --- values in and out, across compilers and optimization levels ------------------------------


def test_scalars(session: ExecutionSession, kernels, toolchain: tuple[str, str]) -> None:
    cxx, opt = toolchain
    module = session.load_module(kernels.object("math_ops.cc", opt, compiler=cxx))
    assert module.test_add(2**40, -7) == 2**40 - 7
    assert module.test_mul(-6, 7) == -42
    assert module.test_fma(1.5, 2.0, 0.25) == 3.25
    assert module.test_not(True) is False
    assert module.test_not(False) is True


def test_strings_arrays_maps(
    session: ExecutionSession, kernels, toolchain: tuple[str, str]
) -> None:
    cxx, opt = toolchain
    module = session.load_module(kernels.object("string_ops.cc", opt, compiler=cxx))
    assert module.test_concat("kernel", "s") == "kernels"
    assert module.test_upper("long enough to live on the heap") == "LONG ENOUGH TO LIVE ON THE HEAP"
    assert module.test_array_sum([1, 2, 3, 4]) == 10
    assert list(module.test_range(5)) == [0, 1, 2, 3, 4]
    assert module.test_map_get({"a": 1, "b": 2}, "b") == 2
    assert module.test_map_get({"a": 1}, "z") == -1
    # Containers made by JIT code are freed by JIT code: never keep one past its library.
    assert dict(module.test_word_lengths(["jit", "kernels"]).items()) == {"jit": 3, "kernels": 7}


def test_c_safe_call(session: ExecutionSession, kernels, toolchain: tuple[str, str]) -> None:
    cxx, opt = toolchain
    lib = session.create_library("c_kernels")
    lib.add(kernels.object("safe_call.c", opt, compiler=cxx))  # compiled by the matching C compiler
    assert lib.get_function("c_add")(40, 2) == 42
    counter = lib.get_function("c_counter")
    assert [counter(), counter(), counter()] == [1, 2, 3]
    with pytest.raises(TypeError, match="c_add expects two ints"):
        lib.get_function("c_add")("forty", 2)


def test_numpy_arrays_go_straight_in(
    session: ExecutionSession, kernels, toolchain: tuple[str, str]
) -> None:
    cxx, opt = toolchain
    module = session.load_module(kernels.object("tensor_ops.cc", opt, compiler=cxx))
    matrix = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert module.test_tensor_sum(matrix) == 66.0
    assert module.test_tensor_ndim(matrix) == 2
    out = np.zeros(5)
    module.test_tensor_add(np.arange(5.0), np.full(5, 0.5), out)
    np.testing.assert_array_equal(out, np.arange(5.0) + 0.5)
    with pytest.raises(TypeError, match="expected a float64 tensor"):
        module.test_tensor_sum(np.arange(3, dtype=np.int32))


# --- errors raised by kernels -----------------------------------------------------------------


def test_kernel_errors_keep_their_type_and_message(
    session: ExecutionSession, kernels, toolchain: tuple[str, str]
) -> None:
    cxx, opt = toolchain
    module = session.load_module(kernels.object("throw_ops.cc", opt, compiler=cxx))
    with pytest.raises(ValueError, match="bad value: negative size"):
        module.test_raise_value_error("negative size")
    with pytest.raises(TypeError, match="bad type: a string"):
        module.test_raise_type_error("a string")
    # A plain std::exception arrives as tvm-ffi's InternalError, a RuntimeError.
    with pytest.raises(RuntimeError, match="std error: plain"):
        module.test_raise_std_exception("plain")
    # Exceptions thrown and caught inside JIT code need the object's unwind tables.
    assert module.test_catch_inside(5) == -5
    assert module.test_catch_inside(-3) == -3
    assert module.test_raise_value_error is not None  # the library survived the throws
