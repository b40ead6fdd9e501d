"""Memory placement: each library stays within 32-bit reach of itself, however fragmented memory is.

Small-code-model objects reach their own data and ``__dso_handle`` with 32-bit
PC-relative relocations (R_X86_64_PC32), so all of a library's code and data
must lie within +-2 GiB of each other. These tests load thousands of libraries
while GiB-sized mappings are created between the loads (address space only:
PROT_NONE, MAP_NORESERVE), keep everything alive, then call every library.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Iterator

import pytest

from pytest_orcjit import ExecutionSession

GiB = 1 << 30
LIBRARIES = 2000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
PROT_NONE = 0
MAP_NORESERVE = 0x4000
MAP_FAILED = ctypes.c_void_p(-1).value


@pytest.fixture
def reserve() -> Iterator:
    """``reserve(size)`` maps ``size`` bytes of inaccessible address space until the test ends."""
    mappings: list[tuple[int, int]] = []

    def reserve(size: int) -> int:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE
        address = _libc.mmap(None, size, PROT_NONE, flags, -1, 0)
        if address in (None, MAP_FAILED):
            pytest.fail(f"mmap of {size} bytes failed: errno {ctypes.get_errno()}")
        mappings.append((address, size))
        return address

    yield reserve
    for address, size in mappings:
        _libc.munmap(address, size)


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
