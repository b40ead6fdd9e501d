"""Probes of the optional Linux features the fork server uses, and skip marks made from them.

Each probe asks this kernel (or container) once whether it has the feature,
without changing this process: what needs a change runs in a forked child. A
test that exercises a feature carries its mark and is skipped, naming the
missing capability, where the probe says it is absent. The plugin itself only
uses these features where it can (``csrc/fork_tuning.h``).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import mmap
import os
from collections.abc import Callable

import pytest

MADV_POPULATE_WRITE = 23
MADV_COLLAPSE = 25

libc = ctypes.CDLL(None, use_errno=True)
"""The C library with madvise, mmap and munmap typed for ctypes (tests share it)."""
libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
)
libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)


def _in_child(probe: Callable[[], bool]) -> bool:
    """``probe()`` run in a forked child (it may change the process): its answer."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if probe() else 1)
        finally:
            os._exit(2)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _madvise_accepted(advice: int, size: int) -> bool:
    """Whether ``madvise(advice)`` on a fresh anonymous, aligned mapping of ``size`` succeeds."""
    prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    raw = libc.mmap(None, 2 * size, prot, flags, -1, 0)
    if raw in (None, ctypes.c_void_p(-1).value):
        return False
    try:
        aligned = -(-raw // size) * size
        ctypes.memset(aligned, 1, size)
        return libc.madvise(aligned, size, advice) == 0 or ctypes.get_errno() != errno.EINVAL
    finally:
        libc.munmap(raw, 2 * size)


@functools.cache
def populate_write() -> bool:
    """madvise(MADV_POPULATE_WRITE), Linux 5.14: what warming copies pages with."""
    return _madvise_accepted(MADV_POPULATE_WRITE, mmap.PAGESIZE)


@functools.cache
def collapse() -> bool:
    """madvise(MADV_COLLAPSE), Linux 6.1, with transparent huge pages not off."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            if "[never]" in f.read():
                return False
    except OSError:
        return False
    # The kernel checks the advice before the range: an empty one is taken if the advice is known.
    return libc.madvise(0, 0, MADV_COLLAPSE) == 0


@functools.cache
def pagemap_exclusive() -> bool:
    """/proc/self/pagemap readable, with the exclusively-mapped bit (Linux 4.2)."""
    present, exclusive = 1 << 63, 1 << 56
    buffer = bytearray(b"x" * mmap.PAGESIZE)
    address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    try:
        with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
            entry = int.from_bytes(
                os.pread(pagemap.fileno(), 8, address // mmap.PAGESIZE * 8), "little"
            )
    except OSError:
        return False
    return bool(entry & present and entry & exclusive)


@functools.cache
def sched_batch() -> bool:
    """A process may make itself SCHED_BATCH (some containers refuse any policy change)."""

    def probe() -> bool:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        return os.sched_getscheduler(0) == os.SCHED_BATCH

    return hasattr(os, "SCHED_BATCH") and _in_child(probe)


@functools.cache
def proc_children() -> bool:
    """/proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN)."""
    pid = os.getpid()
    return os.path.exists(f"/proc/{pid}/task/{pid}/children")


def _requires(probe: Callable[[], bool], capability: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not probe(), reason=f"this kernel or container lacks {capability}")


requires_populate_write = _requires(populate_write, "madvise(MADV_POPULATE_WRITE) (Linux 5.14)")
requires_collapse = _requires(
    collapse, "madvise(MADV_COLLAPSE) (Linux 6.1) with transparent huge pages enabled"
)
requires_pagemap = _requires(
    pagemap_exclusive, "a readable /proc/self/pagemap with its exclusive bit (Linux 4.2)"
)
requires_sched_batch = _requires(sched_batch, "the SCHED_BATCH scheduler policy")
requires_proc_children = _requires(
    proc_children, "/proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN)"
)
