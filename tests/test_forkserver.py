"""The fork server's native side: its records, and what it asks of the kernel.

The records the pytest process and the native loop exchange are laid out alike
on both sides (``pytest_orcjit.protocol`` and ``csrc/fork_server.h``). Warming:
the first child reports the pages it copied (``orcjit.copied_pages``); later
ones copy them while they wait for a job (``orcjit.warm_pages``, what
``csrc/fork_tuning.h`` runs in each waiting child). Each warming test forks a
child of this process that writes to a buffer shared copy-on-write with it,
and reads its own ``/proc/self/pagemap``. Tests of optional kernel features
skip, naming the feature, where ``linux_features`` finds it missing.
"""

from __future__ import annotations

import array
import ctypes
import os
import pickle
import struct
from collections.abc import Callable
from typing import Any

import pytest
from linux_features import (
    requires_collapse,
    requires_pagemap,
    requires_populate_write,
)

from pytest_orcjit import _ffi_api, forkserver, protocol

PAGES = 160  # more than two batches of warming
HUGE_PAGE = 2 << 20


@pytest.mark.parametrize(
    ("name", "record", "fields"),
    [
        ("job", protocol.JOB, protocol.JOB_FIELDS),
        ("status", protocol.STATUS, protocol.STATUS_FIELDS),
        ("run", protocol.RUN, protocol.RUN_FIELDS),
    ],
)
def test_records_are_laid_out_alike_in_python_and_the_core(
    name: str, record: struct.Struct, fields: tuple[str, ...]
) -> None:
    size, native = _ffi_api.fork_record_layouts()[name]  # type: ignore[attr-defined]
    order, codes = record.format[0], record.format[1:]
    assert order == "<"  # standard sizes, no padding: what the core's offsets are compared with
    python = [
        (field, struct.calcsize(order + codes[:index]), code)
        for index, (field, code) in enumerate(zip(fields, codes))
    ]
    assert [tuple(field) for field in native] == python
    assert size == record.size


def in_child(work: Callable[[], Any]) -> Any:
    """``work()`` run in a forked child; its pickled result comes back through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, pickle.dumps(work()))
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 1 << 16):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return pickle.loads(data)


@pytest.fixture
def shared() -> tuple[bytearray, int]:
    """A page-aligned span of ``PAGES`` pages inside a buffer this process has written."""
    page = os.sysconf("SC_PAGE_SIZE")
    buffer = bytearray(b"x" * ((PAGES + 1) * page))
    address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    return buffer, (address + page - 1) // page * page


def copied_runs() -> Any:
    """The runs of pages this process copied since it was forked (``orcjit.copied_pages``)."""
    ranges = _ffi_api.writable_ranges()  # type: ignore[attr-defined]
    runs = _ffi_api.copied_pages(ranges, forkserver.WARM_BATCH)  # type: ignore[attr-defined]
    return array.array("Q", bytes(runs))


def covered(runs: Any, address: int) -> bool:
    return any(runs[i] <= address < runs[i] + runs[i + 1] for i in range(0, len(runs), 2))


def warm(runs: list[int], jobs: int, batched: bool = True) -> bool:
    """Warm ``runs`` (flat address, length pairs) until ``jobs`` is readable, in this process.

    Unless ``batched``, one ``madvise`` per run, as where ``process_madvise``
    is missing or refuses the advice. Returns whether every run was warmed.
    """
    flat = array.array("Q", runs).tobytes()
    batch = forkserver.WARM_BATCH
    return bool(_ffi_api.warm_pages(flat, jobs, batch, batched))  # type: ignore[attr-defined]


@requires_pagemap
def test_a_child_reports_the_pages_it_copied(shared: tuple[bytearray, int]) -> None:
    _, start = shared
    page = os.sysconf("SC_PAGE_SIZE")
    written = [3, 4, 40]

    def write_and_report() -> list[bool]:
        for index in written:
            ctypes.c_ubyte.from_address(start + index * page).value = ord("y")
        runs = copied_runs()
        return [covered(runs, start + index * page) for index in range(PAGES)]

    copied = in_child(write_and_report)
    assert [index for index in written if not copied[index]] == []
    assert sum(copied) < PAGES // 2  # the pages it only read stay shared


@requires_pagemap
@requires_populate_write
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "run_by_run"])
def test_warming_copies_pages_without_changing_them(
    shared: tuple[bytearray, int], batched: bool
) -> None:
    buffer, start = shared
    page = os.sysconf("SC_PAGE_SIZE")
    # Runs of at most three pages, in three batches.
    runs = []
    for index in range(0, PAGES, 3):
        runs += [start + index * page, min(3, PAGES - index) * page]
    never = os.pipe()  # no job ever arrives: warm everything

    def warm_and_report() -> tuple[bool, bool, bytes]:
        done = warm(runs, never[0], batched)
        copied = copied_runs()
        return done, all(covered(copied, start + i * page) for i in range(PAGES)), bytes(buffer)

    done, all_copied, content = in_child(warm_and_report)
    assert content == bytes(buffer)
    assert done and all_copied


@requires_pagemap
def test_warming_stops_when_a_job_is_waiting(shared: tuple[bytearray, int]) -> None:
    _, start = shared
    page = os.sysconf("SC_PAGE_SIZE")
    jobs_r, jobs_w = os.pipe()
    os.write(jobs_w, b"job")

    def warm_and_report() -> tuple[bool, bool]:
        done = warm([start, PAGES * page], jobs_r)
        copied = copied_runs()
        return done, any(covered(copied, start + i * page) for i in range(PAGES))

    assert in_child(warm_and_report) == (False, False)


@requires_pagemap
@requires_populate_write
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "run_by_run"])
def test_addresses_that_are_not_mapped_are_skipped(
    shared: tuple[bytearray, int], batched: bool
) -> None:
    # In one batch with the mapped page: the batch fails, and its runs are warmed one by one.
    _, start = shared
    page = os.sysconf("SC_PAGE_SIZE")
    never = os.pipe()

    def warm_and_report() -> bool:
        warm([page, page, start, page, 0x7FFF_0000_0000, page], never[0], batched)
        return covered(copied_runs(), start)

    assert in_child(warm_and_report) is True


def huge_kib(address: int) -> int:
    """AnonHugePages of the mapping of this process that holds ``address``, in KiB."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                low, high = (int(bound, 16) for bound in fields[0].split("-"))
                inside = low <= address < high
            elif inside and fields[0] == "AnonHugePages:":
                return int(fields[1])
    return 0


@requires_collapse
def test_collapsing_backs_memory_with_huge_pages_without_changing_it() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    c_int = ctypes.c_int
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, c_int, c_int, c_int, ctypes.c_long)
    size = 3 * HUGE_PAGE  # holds at least one aligned window
    low = libc.mmap(None, size, 3, 0x22, -1, 0)  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    page = os.sysconf("SC_PAGE_SIZE")
    for offset in range(0, size, 2 * page):  # every other page: collapsing fills the holes
        ctypes.memmove(low + offset, offset.to_bytes(8, "little"), 8)
    before = ctypes.string_at(low, size)

    def collapse_and_report() -> tuple[int, bytes]:
        _ffi_api.collapse_huge_pages(array.array("Q", [low, size]).tobytes())  # type: ignore[attr-defined]
        return huge_kib(low), ctypes.string_at(low, size)

    huge, after = in_child(collapse_and_report)
    assert huge >= HUGE_PAGE // 1024
    assert after == before
