"""Symbol resolution: inside the library first, then the process; libraries are isolated."""

from __future__ import annotations

import os

from pytest_orcjit import ExecutionSession


def test_process_symbols_resolve(session: ExecutionSession, kernels, toolchain) -> None:
    """libc, libstdc++ and libtvm_ffi symbols come from the process."""
    cxx, opt = toolchain
    lib = session.create_library()
    lib.add(kernels.object("process_symbols.cc", opt, compiler=cxx))
    assert lib.get_function("test_getpid")() == os.getpid()
    assert lib.get_function("test_strlen")("twelve chars") == 12
    assert lib.get_function("test_repeat")("ab", 5) == "ababababab"


def test_library_definition_wins_over_the_process(session: ExecutionSession, kernels) -> None:
    overriding = session.create_library("own_getpid")
    overriding.add(kernels.object("process_symbols.cc"))
    overriding.add(kernels.object("getpid_override.c"))  # defines getpid() -> 4242
    plain = session.create_library("process_getpid")
    plain.add(kernels.object("process_symbols.cc"))
    assert overriding.get_function("test_getpid")() == 4242
    assert plain.get_function("test_getpid")() == os.getpid()


def test_same_symbol_in_two_libraries_each_sees_its_own(session: ExecutionSession, kernels) -> None:
    v1 = session.create_library("v1")
    v2 = session.create_library("v2")
    v1.add(kernels.object("math_ops.cc"))
    v2.add(kernels.object("implementation_v2.cc"))
    assert v1.get_function("test_add")(1, 2) == 3
    assert v2.get_function("test_add")(1, 2) == 1003
    assert v1.get_function("test_implementation")() == 1
    assert v2.get_function("test_implementation")() == 2


def test_one_object_in_two_libraries_has_separate_data(session: ExecutionSession, kernels) -> None:
    data = kernels.read("safe_call.c")
    first, second = session.create_library(), session.create_library()
    first.add(data)
    second.add(data)
    first_counter, second_counter = (
        first.get_function("c_counter"),
        second.get_function("c_counter"),
    )
    assert [first_counter(), first_counter(), first_counter()] == [1, 2, 3]
    assert second_counter() == 1


def test_each_library_has_its_own_dso_handle(session: ExecutionSession, kernels, toolchain) -> None:
    cxx, opt = toolchain
    one, other = session.create_library(), session.create_library()
    for lib in (one, other):
        lib.add(kernels.object("dso_handle.cc", opt, compiler=cxx))
    one.add(kernels.object("dso_handle.cc", opt, "-DDSO_EXPORT=test_dso_handle_b", compiler=cxx))
    handle_a = one.get_function("test_dso_handle")()
    handle_b = one.get_function("test_dso_handle_b")()
    assert handle_a != 0
    assert handle_a == handle_b  # two objects of one library share it
    assert other.get_function("test_dso_handle")() != handle_a
