"""Memory placement: each library stays within 32-bit reach of itself and of the process.

Small-code-model objects reach their own data and ``__dso_handle`` with 32-bit
PC-relative relocations (R_X86_64_PC32), so all of a library's code and data
must lie within +-2 GiB of each other. Objects compiled with ``g++ -fpie`` also
reach the process's data that way (libstdc++'s typeinfo and vtables,
``std::cerr``), so their library must lie within +-2 GiB of those symbols too.
These tests load thousands of libraries while GiB-sized mappings are created
between the loads (address space only: PROT_NONE, MAP_NORESERVE).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from linux_features import libc

from pytest_orcjit import ExecutionSession

GiB = 1 << 30
LIBRARIES = 2000
REACH_LOADS = 3000
REACH_OPEN = 200
REACH_BUILDS = {
    "g++-fpie": ("g++", ("-fpie",)),
    "clang++-22-fpie": ("clang++-22", ("-fpie", "-fdirect-access-external-data")),
}
"""Compilers and flags whose code reaches libstdc++'s data with R_X86_64_PC32 (clang++ -fpie
alone goes through the GOT)."""

PROT_NONE = 0
MAP_NORESERVE = 0x4000
MAP_FAILED = ctypes.c_void_p(-1).value


@pytest.fixture
def reserve() -> Iterator:
    """``reserve(size)`` maps ``size`` bytes of inaccessible address space until the test ends."""
    mappings: list[tuple[int, int]] = []

    def reserve(size: int) -> int:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE
        address = libc.mmap(None, size, PROT_NONE, flags, -1, 0)
        if address in (None, MAP_FAILED):
            pytest.fail(f"mmap of {size} bytes failed: errno {ctypes.get_errno()}")
        mappings.append((address, size))
        return address

    yield reserve
    for address, size in mappings:
        libc.munmap(address, size)


def test_thousands_of_libraries_between_gib_mappings(
    session: ExecutionSession, kernels, reserve
) -> None:
    data = kernels.read("safe_call.c")
    libraries, counters, handles = [], [], []
    for index in range(LIBRARIES):
        lib = session.create_library(f"placed{index}")
        lib.add(data)
        counters.append(lib.get_function("c_counter"))
        handles.append(lib.get_function("c_dso_handle"))
        libraries.append(lib)
        reserve(GiB if index % 10 else 4 * GiB)
    assert all(lib.jit_memory > 0 for lib in libraries)
    # Every library runs, and reaches its own counter and its own __dso_handle.
    assert [counter() for counter in counters] == [1] * LIBRARIES
    assert [counter() for counter in counters] == [2] * LIBRARIES
    addresses = [handle() for handle in handles]
    assert len(set(addresses)) == LIBRARIES


def test_objects_linked_later_reach_earlier_ones_across_a_gap(
    session: ExecutionSession, kernels, reserve
) -> None:
    """An object added after GiBs were mapped still reaches the library's first page.

    dso_handle.cc refers to the library's ``__dso_handle`` PC-relative; that page
    was placed when the library was created, before the gap.
    """
    libraries = []
    for index in range(20):
        lib = session.create_library(f"incremental{index}")
        lib.add(kernels.read("safe_call.c"))
        lib.get_function("c_counter")()  # linked now
        reserve(8 * GiB)
        lib.add(kernels.read("dso_handle.cc"))
        libraries.append(lib)
        reserve(GiB)
    for lib in libraries:
        assert lib.get_function("test_dso_handle")() == lib.get_function("c_dso_handle")()
        assert lib.get_function("c_counter")() == 2


def pc32_undefined_symbols(path: Path) -> set[str]:
    """The undefined symbols that ``path`` refers to with R_X86_64_PC32, read by llvm-readelf."""
    readelf = shutil.which("llvm-readelf-22") or shutil.which("llvm-readelf")
    if readelf is None:
        pytest.skip("llvm-readelf is not installed")
    symbols = subprocess.run(
        [readelf, "-sW", str(path)], capture_output=True, text=True, check=True
    )
    undefined = {
        f[7]
        for f in map(str.split, symbols.stdout.splitlines())
        if f[6:7] == ["UND"] and len(f) > 7
    }
    relocations = subprocess.run(
        [readelf, "-rW", str(path)], capture_output=True, text=True, check=True
    )
    pc32 = {
        f[4] for f in map(str.split, relocations.stdout.splitlines()) if f[2:3] == ["R_X86_64_PC32"]
    }
    return pc32 & undefined


@pytest.fixture(params=sorted(REACH_BUILDS))
def reach_object(request: pytest.FixtureRequest, kernels) -> str:
    """process_reach.cc compiled so that it reaches libstdc++'s typeinfo 32-bit PC-relatively."""
    compiler, flags = REACH_BUILDS[request.param]
    path = kernels.object("process_reach.cc", *flags, compiler=compiler)
    assert "_ZTISt9bad_alloc" in pc32_undefined_symbols(path)
    return str(path)


def test_thousands_of_loads_reach_the_process(
    session: ExecutionSession, reach_object: str, reserve
) -> None:
    """Each load of a -fpie object lands within 2 GiB of libstdc++, also after GiBs of mappings."""
    for index in range(REACH_LOADS):
        lib = session.create_library(f"reach{index}")
        lib.add(reach_object)
        assert lib.get_function("reach_process")(index) == index + 1
        lib.close()
        if index % 300 == 299:
            reserve(GiB)


def test_hundreds_of_open_libraries_reach_the_process(
    session: ExecutionSession, reach_object: str, reserve
) -> None:
    libraries, functions = [], []
    for index in range(REACH_OPEN):
        lib = session.create_library(f"open{index}")
        lib.add(reach_object)
        functions.append(lib.get_function("reach_process"))
        libraries.append(lib)
        if index % 50 == 49:
            reserve(GiB)
    assert [function(index) for index, function in enumerate(functions)] == [
        index + 1 for index in range(REACH_OPEN)
    ]
    for lib in libraries:
        lib.close()


@pytest.fixture(scope="module")
def far_data(kernels) -> ctypes.CDLL:
    """far_data.c, loaded for the process's symbols (RTLD_GLOBAL): reach_low, then reach_high
    more than 2 GiB above it, then reach_far more than 4 GiB above it."""
    path = kernels.shared_library("far_data.c", "-O0", compiler="g++")
    library = ctypes.CDLL(str(path), os.RTLD_GLOBAL)
    low, high, far = (
        ctypes.addressof(ctypes.c_int.in_dll(library, name))
        for name in ("reach_low", "reach_high", "reach_far")
    )
    assert high - low > 2 * GiB and far - low > 4 * GiB
    return library


def far_reach(kernels, *symbols: str) -> str:
    """far_reach.c, compiled -fpie to refer to ``symbols`` of far_data.c (one or two)."""
    defines = [f"-D{macro}={symbol}" for macro, symbol in zip(("FIRST", "SECOND"), symbols)]
    return str(kernels.object("far_reach.c", "-fpie", *defines, compiler="g++"))


def link_error(session: ExecutionSession, path: str, function: str) -> str:
    lib = session.create_library("far")
    lib.add(path)
    with pytest.raises(RuntimeError) as raised:
        lib.get_function(function)
    return str(raised.value)


def test_symbols_too_far_apart_for_any_placement(
    session: ExecutionSession, kernels, far_data
) -> None:
    path = far_reach(kernels, "reach_low", "reach_far")
    message = link_error(session, path, "get_reach_low")
    assert f"'{path}' refers to 'reach_low'" in message, message
    assert "'reach_far'" in message and "no address is within 2 GiB of both" in message, message
    assert message.endswith("compile the objects with -fPIC"), message


def test_no_room_left_within_reach(session: ExecutionSession, kernels, far_data) -> None:
    """What is within 2 GiB of both reach_low and reach_high is far_data's own memory."""
    path = far_reach(kernels, "reach_low", "reach_high")
    message = link_error(session, path, "get_reach_low")
    assert re.search(r"within 2 GiB of 'reach_(low|high)' \(in .*far_data", message), message
    assert f"which '{path}' refers to" in message, message
    assert "no free address space is left there" in message and "-fPIC" in message, message


def test_object_added_later_out_of_the_library_reach(
    session: ExecutionSession, kernels, far_data
) -> None:
    """A library placed near reach_low cannot take an object that reaches reach_high."""
    lib = session.create_library("near-low")
    lib.add(far_reach(kernels, "reach_low"))
    assert lib.get_function("get_reach_low")() == 1
    path = far_reach(kernels, "reach_high")
    with pytest.raises(ValueError) as raised:
        lib.add(path)
    message = str(raised.value)
    assert f"cannot add '{path}' to library 'near-low': it refers to 'reach_high'" in message
    assert "compile the object with -fPIC" in message, message
    assert lib.get_function("get_reach_low")() == 1  # the library is as it was


def test_out_of_range_relocation_names_the_object_and_symbol(
    session: ExecutionSession, kernels
) -> None:
    """Absolute 32-bit relocations (g++ -fno-pic) reach nothing above 4 GiB: the link error says
    which object refers to what, and that -fPIC fixes it."""
    path = str(kernels.object("process_reach.cc", "-fno-pic", compiler="g++"))
    lib = session.create_library("no-pic")
    lib.add(path)
    with pytest.raises(RuntimeError) as raised:
        lib.get_function("reach_process")
    message = str(raised.value)
    assert re.search(rf"'{re.escape(path)}' refers to '[^']+'", message), message
    assert "compile the objects with -fPIC" in message, message
