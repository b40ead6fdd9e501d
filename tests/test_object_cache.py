"""The session's object cache never serves stale bytes.

A session reads, checks and parses each object file once and reuses it while
the file is unchanged (csrc/object_cache.h). These tests change the file under
the same path in the ways a build can (replaced by rename, rewritten in place
with the same size within the same clock tick) and check that the next library
gets the new code.
"""

from __future__ import annotations

import os
from pathlib import Path

from pytest_orcjit import ExecutionSession


def implementation(session: ExecutionSession, path: Path) -> int:
    with session.create_library() as lib:
        lib.add(path)
        return int(lib.get_function("test_implementation")())


def same_size(*blobs: bytes) -> list[bytes]:
    """The blobs padded with zeros to one length (bytes after the last section are ignored)."""
    size = max(len(blob) for blob in blobs)
    return [blob + bytes(size - len(blob)) for blob in blobs]


def test_replaced_file_is_read_again(session: ExecutionSession, kernels, tmp_path: Path) -> None:
    path = tmp_path / "kernel.o"
    path.write_bytes(kernels.read("math_ops.cc"))
    assert implementation(session, path) == 1
    replacement = tmp_path / "replacement.o"
    replacement.write_bytes(kernels.read("implementation_v2.cc"))
    os.replace(replacement, path)
    assert implementation(session, path) == 2


def test_file_rewritten_in_place_is_read_again(
    session: ExecutionSession, kernels, tmp_path: Path
) -> None:
    v1, v2 = same_size(kernels.read("math_ops.cc"), kernels.read("implementation_v2.cc"))
    path = tmp_path / "kernel.o"
    path.write_bytes(v1)
    for _ in range(3):  # the same cache entry stays valid while the file does not change
        assert implementation(session, path) == 1
    stat = path.stat()
    with open(path, "r+b") as file:  # same inode, same size
        file.write(v2)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    assert implementation(session, path) == 2
