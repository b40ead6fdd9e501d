"""Global functions and object types that a JIT library registers with tvm-ffi.

A library registers them from its static constructors, as any TVM-FFI
extension does (kernels/ffi_extension.cc is shaped like tvm-ffi's
examples/python_packaging). The core removes the library's global functions when
it closes, restoring what they overrode, and keeps its object types valid
(csrc/ffi_registrations.h).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import tvm_ffi

from pytest_orcjit import ExecutionSession

ADD_ONE = "my_ffi_extension.add_one"


def load_extension(
    session: ExecutionSession, kernels, compiler: str = "clang++-22", opt: str = "-O2"
):
    lib = session.create_library("ffi_extension")
    lib.add(kernels.object("ffi_extension.cc", opt, compiler=compiler))
    return lib


def test_global_functions_are_removed_when_the_library_closes(
    session: ExecutionSession, kernels, toolchain
) -> None:
    cxx, opt = toolchain
    for _ in range(2):  # the second library registers the same names again
        lib = load_extension(session, kernels, cxx, opt)
        assert lib.add_two(1) == 3
        add_one = tvm_ffi.get_global_func(ADD_ONE)
        assert add_one(41) == 42
        with pytest.raises(RuntimeError, match="boom"):
            tvm_ffi.get_global_func("my_ffi_extension.raise_error")("boom")
        del add_one  # made by the library: must not outlive it
        lib.close()
        assert tvm_ffi.get_global_func(ADD_ONE, allow_missing=True) is None
        assert tvm_ffi.get_global_func("my_ffi_extension.raise_error", allow_missing=True) is None


TYPES = """
    import sys
    import tvm_ffi
    from pytest_orcjit import create_session

    session = create_session()
    first = session.create_library("first")
    first.add(sys.argv[1])
    pair = first.make_pair(1, 2)
    assert (pair.a, pair.b, pair.sum()) == (1, 2, 3)
    pair_type = type(pair)
    del pair  # made by the library's code: must not outlive it
    first.close()
    # The first library to register the type owns its reflection entries, which point into its
    # memory: that stays mapped, and counted.
    assert first.jit_memory > 0
    second = session.create_library("second")
    second.add(sys.argv[2])
    other = second.make_pair(5, 6)
    assert type(other) is pair_type
    assert (other.a, other.b, other.sum()) == (5, 6, 11)
    other.a = 7
    assert other.sum() == 13
    del other
    second.close()
    assert second.jit_memory == 0, "a library that registered no new type is unmapped at close"
    print("ok")
"""


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` in a new process: which library registers a type first is per process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_object_types_stay_usable_after_their_library_closes(kernels) -> None:
    objects = [
        str(kernels.object("ffi_extension.cc", compiler=cxx)) for cxx in ("clang++-22", "g++")
    ]
    result = run_python(TYPES, *objects)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


CHANGED = """
    import sys
    import tvm_ffi
    from pytest_orcjit import create_session

    session = create_session()
    with session.create_library("first") as first:
        first.add(sys.argv[1])
        assert first.add_two(0) == 2
    changed = session.create_library("changed")
    changed.add(sys.argv[2])
    try:
        changed.add_two(0)
    except RuntimeError as err:
        print(err)
    changed.close()
    assert tvm_ffi.get_global_func("my_ffi_extension.add_one", allow_missing=True) is None
"""


def test_a_type_registered_again_with_another_layout_fails_the_load(kernels) -> None:
    original = kernels.object("ffi_extension.cc")
    changed = kernels.object("ffi_extension.cc", "-DCHANGED_LAYOUT")
    result = run_python(CHANGED, str(original), str(changed))
    assert result.returncode == 0, result.stderr
    assert "library 'changed' registers the object type 'my_ffi_extension.IntPair'" in result.stdout
    assert "unlike library 'first', which registered that type first" in result.stdout
    assert "forked isolation" in result.stdout


def test_a_library_that_overrides_a_global_restores_it_at_close(
    session: ExecutionSession, kernels
) -> None:
    tvm_ffi.register_global_func(
        "orcjit_test.greet", lambda name: f"hello from Python, {name}", override=True
    )
    try:
        lib = session.create_library("override")
        lib.add(kernels.object("ffi_override.cc"))
        assert lib.greet("x") == "hello from the library, x"
        assert tvm_ffi.get_global_func("orcjit_test.greet")("y") == "hello from the library, y"
        lib.close()
        assert tvm_ffi.get_global_func("orcjit_test.greet")("z") == "hello from Python, z"
    finally:
        tvm_ffi.registry.remove_global_func("orcjit_test.greet")


def test_two_open_libraries_cannot_register_the_same_global(
    session: ExecutionSession, kernels
) -> None:
    first = load_extension(session, kernels)
    assert first.add_two(0) == 2
    second = load_extension(session, kernels)
    with pytest.raises(RuntimeError, match=r"my_ffi_extension\.add_one.*already registered"):
        second.add_two(0)
    second.close()
    assert tvm_ffi.get_global_func(ADD_ONE)(1) == 2, "the first library's function stays"
    first.close()
    assert tvm_ffi.get_global_func(ADD_ONE, allow_missing=True) is None


LOOP = """
    import sys
    import tvm_ffi
    from pytest_orcjit import create_session

    session = create_session()
    for i in range(100):
        lib = session.create_library("ffi_extension")
        lib.add(sys.argv[1 + i % 2])
        assert lib.add_two(i) == i + 2
        assert tvm_ffi.get_global_func("my_ffi_extension.add_one")(i) == i + 1
        pair = lib.make_pair(i, 1)
        assert (pair.a, pair.b, pair.sum()) == (i, 1, i + 1)
        point = lib.make_point(i)
        assert point.x == i
        del pair, point
        lib.close()
        assert tvm_ffi.get_global_func("my_ffi_extension.add_one", allow_missing=True) is None
    print("ok")
"""


def test_load_use_close_100_times_in_one_process(kernels) -> None:
    objects = [
        str(kernels.object("ffi_extension.cc", compiler=cxx)) for cxx in ("clang++-22", "g++")
    ]
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LOOP), *objects],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
