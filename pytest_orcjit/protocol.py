"""The wire protocol of the fork boundary: what crosses between the pytest process, the fork
server and the server's children, in which layout, and the helpers that move it.

Imported by both sides (:mod:`pytest_orcjit.isolation`, the pytest process's;
:mod:`pytest_orcjit.forkserver`, the server's and the children's) and by
nothing that needs pytest. The records the native loop reads or writes (``JOB``,
``STATUS``, ``RUN``) mirror those of ``csrc/fork_server.h`` and
``csrc/fork_tuning.h`` field for field; ``tests/test_forkserver.py``
compares them with what the core reports (``orcjit.fork_record_layouts``).
``docs/architecture.md`` describes the fork server and why it is built so.

Channels (``Ends`` holds the server's ends):

* jobs (pipe, pytest process -> the next waiting child): one ``JOB`` per test.
* messages (a memory file shared by all, emptied before each job; the running
  child -> the pytest process): the child's ``PID``, then messages, each a
  ``HEADER`` (its length) and a pickled dict: ``{"report": data, "extra":
  bool}`` for each report logged, then the last one, ``{"warnings": [...],
  "backtraced": bool, "imported": [(name, file), ...]}`` with ``"exit": (msg, returncode)`` or
  ``"interrupted": True`` where the test ended the session.
* done (pipe, child -> pytest process): a byte once the last message is written.
* stderr (pipe, child -> pytest process): the child's fd 2, when pytest does not capture it.
* status (pipe, server -> pytest process): a ``STATUS`` for each child that ended.
* lifeline (pipe, pytest process -> server): the server leaves at its end of file.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import struct
from dataclasses import dataclass
from typing import Any

JOB = struct.Struct("<id")
"""pytest process -> child: the item's index in ``session.items`` (-1: the server's first item),
its timeout in seconds (0: none). ``csrc/fork_server.h``'s ``JobRecord``."""
JOB_FIELDS = ("index", "timeout")
STATUS = struct.Struct("<ii")
"""server -> pytest process: pid and wait status of a child that ended. ``StatusRecord``."""
STATUS_FIELDS = ("pid", "wait_status")
RUN = struct.Struct("<QQ")
"""first child -> server: a run of pages it copied (address, length in bytes). ``PageRun``."""
RUN_FIELDS = ("address", "length")
PID = struct.Struct("<i")
"""child -> pytest process, first in the messages file: who took the job."""
HEADER = struct.Struct("<Q")
"""child -> pytest process, then: the length of each pickled message."""
INTERNAL_ERROR = 70
"""Exit status of a server or child when the fork boundary itself failed."""


@dataclass(frozen=True)
class Ends:
    """The server's ends of the pipes, and the children's messages file (see the module)."""

    jobs: int
    messages: int
    done: int
    stderr: int
    status: int
    lifeline: int


def send(fd: int, message: dict[str, Any]) -> None:
    """Write one message: its length, then the pickled dict.

    ``fd`` is the server's messages file: written as soon as a report is made,
    a message survives the child's crash, yet wakes nobody.
    """
    payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    write_all(fd, HEADER.pack(len(payload)) + payload)


class MessageReader:
    """Takes the child's pid and its whole messages out of what it wrote so far."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self._taken = 0  # bytes taken so far

    def take(self, data: bytearray) -> list[dict[str, Any]]:
        """The messages of ``data`` (all the child wrote so far) not taken yet, whole ones only."""
        messages = []
        if self.pid is None and len(data) >= PID.size:
            self.pid = PID.unpack_from(data)[0]
            self._taken = PID.size
        while self.pid is not None and len(data) - self._taken >= HEADER.size:
            start = self._taken + HEADER.size
            stop = start + HEADER.unpack_from(data, self._taken)[0]
            if len(data) < stop:
                break
            messages.append(pickle.loads(memoryview(data)[start:stop]))
            self._taken = stop
        return messages


def write_all(fd: int, data: bytes | bytearray) -> None:
    """Write all of ``data`` to ``fd``, waiting where it is non-blocking and full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def read_into(fd: int, buffer: bytearray) -> int:
    """Append what ``fd`` has to ``buffer``: bytes read, 0 at end of file, -1 if none for now."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:  # non-blocking, and a grandchild may still hold the pipe open
        return -1
    buffer += chunk
    return len(chunk)


def kill(pid: int, signum: int) -> None:
    """``os.kill``, except that a process already gone is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
