"""Lifetimes: static constructors and destructors, closing, dropping, and JIT memory.

kernels/static_init.cc appends one line per constructor or destructor event to
the file the ``event_log`` fixture names, so each test reads exactly which ran,
in which order and how often.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_orcjit import ExecutionSession, create_session
from pytest_orcjit.api import warm_objects

CONSTRUCTORS = ["ctor101", "ctor102", "global150", "ctor", "global_a", "global_b"]
DESTRUCTORS = ["dtor102", "dtor101", "~local", "~global_b", "~global_a", "~global150"]


def events(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def assert_constructed_in_order(log: Path) -> None:
    ran = [event for event in events(log) if event in CONSTRUCTORS]
    assert sorted(ran) == sorted(CONSTRUCTORS), "each constructor runs exactly once"
    assert ran[:3] == ["ctor101", "ctor102", "global150"], "priorities 101 < 102 < 150 < default"
    assert ran.index("global_a") < ran.index("global_b"), "C++ globals in definition order"


def assert_destroyed_once_in_order(log: Path) -> None:
    ran = [event for event in events(log) if event not in CONSTRUCTORS and event != "local"]
    assert sorted(ran) == sorted(DESTRUCTORS), "each destructor runs exactly once"
    assert ran.index("dtor102") < ran.index("dtor101"), "destructor priorities run in reverse"
    cxx_objects = [event for event in ran if event.startswith("~")]
    assert cxx_objects == ["~local", "~global_b", "~global_a", "~global150"], (
        "C++ objects are destroyed in reverse order of construction"
    )


def load_static_init(session: ExecutionSession, kernels, *flags: str, compiler: str = "clang++-22"):
    lib = session.create_library("static_init")
    lib.add(kernels.object("static_init.cc", *flags, compiler=compiler))
    return lib


# --- constructors -----------------------------------------------------------------------------


def test_constructors_run_before_the_first_call(
    session: ExecutionSession, kernels, event_log: Path, toolchain
) -> None:
    cxx, opt = toolchain
    lib = load_static_init(session, kernels, opt, compiler=cxx)
    assert events(event_log) == [], "nothing runs when an object is only added"
    count = lib.get_function("test_event_count")
    assert_constructed_in_order(event_log)  # before anything was called
    assert count() == len(CONSTRUCTORS)
    lib.get_function("test_touch_local")()
    lib.get_function("test_touch_local")()
    assert events(event_log)[len(CONSTRUCTORS) :] == ["local"], "function-local static, once"
    lib.close()
    assert_destroyed_once_in_order(event_log)


def test_ctors_and_dtors_sections(session: ExecutionSession, kernels, event_log: Path) -> None:
    """The older .ctors/.dtors sections (clang -fno-use-init-array), with priorities."""
    lib = load_static_init(session, kernels, "-fno-use-init-array")
    lib.get_function("test_touch_local")()
    assert_constructed_in_order(event_log)
    lib.close()
    assert_destroyed_once_in_order(event_log)


@pytest.mark.parametrize("flags", [(), ("-fno-use-init-array",)], ids=["init_array", "ctors"])
def test_every_load_of_an_object_constructs_and_destroys(
    session: ExecutionSession, kernels, event_log: Path, flags: tuple[str, ...]
) -> None:
    """Later loads link a copy of the graph the first load prepared (csrc/graph_copy.h)."""
    for _ in range(3):
        event_log.unlink(missing_ok=True)
        with load_static_init(session, kernels, *flags) as lib:
            lib.get_function("test_touch_local")()
            assert_constructed_in_order(event_log)
        assert_destroyed_once_in_order(event_log)


@pytest.mark.parametrize("flags", [(), ("-fno-use-init-array",)], ids=["init_array", "ctors"])
def test_warm_objects_runs_no_code_and_later_loads_run_theirs(
    session: ExecutionSession, kernels, event_log: Path, flags: tuple[str, ...]
) -> None:
    """What the fork server does before its first fork: link once, run nothing."""
    warm_objects(session, [kernels.object("static_init.cc", *flags)])
    gc.collect()
    assert events(event_log) == [], "no constructor or destructor of the warm-up library runs"
    with load_static_init(session, kernels, *flags) as lib:
        lib.get_function("test_touch_local")()
        assert_constructed_in_order(event_log)
    assert_destroyed_once_in_order(event_log)


def test_load_module_runs_constructors(session: ExecutionSession, kernels, event_log: Path) -> None:
    module = session.load_module(kernels.read("static_init.cc"))
    assert_constructed_in_order(event_log)
    assert module.test_event_count() == len(CONSTRUCTORS)


# --- destructors: exactly once, at close, drop or session close -------------------------------


def test_close_runs_destructors_once(session: ExecutionSession, kernels, event_log: Path) -> None:
    lib = load_static_init(session, kernels)
    lib.get_function("test_touch_local")()
    lib.close()
    assert_destroyed_once_in_order(event_log)
    lib.close()  # idempotent
    del lib
    gc.collect()
    session.close()
    assert_destroyed_once_in_order(event_log)


def test_with_block_closes_the_library(session: ExecutionSession, kernels, event_log: Path) -> None:
    with load_static_init(session, kernels) as lib:
        lib.get_function("test_touch_local")()
        assert events(event_log)[-1] == "local"
    assert_destroyed_once_in_order(event_log)


def test_dropping_the_last_reference_runs_destructors(
    session: ExecutionSession, kernels, event_log: Path
) -> None:
    lib = load_static_init(session, kernels)
    lib.get_function("test_touch_local")()
    del lib
    gc.collect()
    assert_destroyed_once_in_order(event_log)


def test_session_close_runs_destructors_of_open_libraries(kernels, event_log: Path) -> None:
    session = create_session()
    lib = load_static_init(session, kernels)
    lib.get_function("test_touch_local")()
    session.close()
    assert_destroyed_once_in_order(event_log)
    with pytest.raises(RuntimeError, match="closed"):
        lib.add(kernels.object("math_ops.cc"))
    del lib, session
    gc.collect()
    assert_destroyed_once_in_order(event_log)  # not a second time


def test_a_held_function_keeps_its_library_alive(
    session: ExecutionSession, kernels, event_log: Path
) -> None:
    lib = load_static_init(session, kernels)
    touch = lib.get_function("test_touch_local")
    del lib
    gc.collect()
    assert touch() == len("local")  # the library is still there
    assert not any(event.startswith(("~", "dtor")) for event in events(event_log))
    del touch
    gc.collect()
    assert_destroyed_once_in_order(event_log)


def test_calling_a_function_of_a_closed_library_raises(session: ExecutionSession, kernels) -> None:
    lib = session.create_library("closed_early")
    lib.add(kernels.object("math_ops.cc"))
    add = lib.get_function("test_add")
    lib.close()
    with pytest.raises(RuntimeError, match=r"closed_early.*closed"):
        add(1, 2)
    with pytest.raises(RuntimeError, match="closed"):
        lib.get_function("test_add")


# --- JIT memory -------------------------------------------------------------------------------


def is_mapped(address: int) -> bool:
    for line in Path("/proc/self/maps").read_text().splitlines():
        start, end = (int(part, 16) for part in line.split()[0].split("-"))
        if start <= address < end:
            return True
    return False


def test_jit_memory_is_counted_and_released_by_close(session: ExecutionSession, kernels) -> None:
    lib = session.create_library()
    lib.add(kernels.object("dso_handle.cc"))
    handle = lib.get_function("test_dso_handle")()  # an address inside the library's memory
    held = lib.jit_memory
    assert held > 0
    lib.add(kernels.object("math_ops.cc"))
    lib.get_function("test_add")
    assert lib.jit_memory > held, "linking more objects takes more memory"
    assert is_mapped(handle)
    lib.close()
    assert lib.jit_memory == 0
    assert not is_mapped(handle)


def test_dropping_a_library_unmaps_its_memory(session: ExecutionSession, kernels) -> None:
    lib = session.create_library()
    lib.add(kernels.object("dso_handle.cc"))
    handle = lib.get_function("test_dso_handle")()
    assert is_mapped(handle)
    del lib
    gc.collect()
    assert not is_mapped(handle)


# --- values that outlive their library --------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "keep",
    [
        pytest.param("mod.test_range(100)", id="array"),
        pytest.param("mod.test_word_lengths(['a', 'bb'])", id="map"),
        pytest.param("mod.test_upper('a string too long to be small')", id="string"),
    ],
)
def test_a_returned_object_may_outlive_its_library(kernels, keep: str) -> None:
    """Containers made in JIT code are freed by code of the library: dropping it first must not
    crash the process (it did: the deleter jumped into unmapped memory)."""
    result = run_python(
        f"""
        import gc
        from pytest_orcjit import create_session
        session = create_session()
        mod = session.load_module({str(kernels.object("string_ops.cc"))!r})
        kept = {keep}
        del mod
        gc.collect()
        del kept
        gc.collect()
        print("survived")
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout


def test_a_library_of_unlinked_objects_may_outlive_its_session(kernels) -> None:
    """Objects added and never linked hold names of the JIT's string pool: a library dropped after
    its session closed released them into freed memory and corrupted the heap (in two runs of
    three, at some point of this loop)."""
    result = run_python(
        f"""
        import gc
        from pytest_orcjit import create_session
        for _ in range(200):
            session = create_session()
            lib = session.create_library()
            lib.add({str(kernels.object("math_ops.cc"))!r})
            session.close()
            del lib, session
            gc.collect()
        print("survived")
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout


def test_a_kernel_exception_may_outlive_its_library(kernels) -> None:
    """pytest keeps the exceptions of failed tests; a library closed at teardown must not
    leave them pointing into unmapped memory."""
    result = run_python(
        f"""
        import gc
        from pytest_orcjit import create_session
        session = create_session()
        mod = session.load_module({str(kernels.object("throw_ops.cc"))!r})
        try:
            mod.test_raise_value_error("kept")
        except ValueError as error:
            kept = error
        del mod
        session.close()
        gc.collect()
        print(str(kept))
        del kept
        gc.collect()
        print("survived")
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bad value: kept" in result.stdout
    assert "survived" in result.stdout
