"""Sanitizer reports: sending each test's to files of its own, reading them, naming JIT frames.

A test that runs where a sanitizer runtime is loaded has the runtimes' reports
sent to files named for it (``__sanitizer_set_report_path``: one file per
runtime and process). The process that runs the test reads its own after each
phase (UBSan continues after a report); the pytest process reads what a forked
test that died left (ASan ends the process after its report). ASan prints JIT
frames as ``(<unknown module>)``: its error callback writes down, before the
process ends, what the core's ``describe_jit_address`` (jit_symbolizer.h) says
each of them is, and the reader names them. Used by :mod:`pytest_orcjit.sanitize`.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

MSG_ENDS_PYTEST = "\norcjit: AddressSanitizer ends pytest in {test}:\n{report}\n"

_RUNTIME_FILE = re.compile(r"lib(?:clang_rt\.(asan|ubsan_standalone)-\w+|(asan|ubsan))\.so[.\d]*$")
_UNKNOWN_FRAME = re.compile(r"^(?P<head>\s*#\d+ 0x(?P<pc>[0-9a-f]+)) +\(<unknown module>\)$", re.M)
_UNKNOWN_SUMMARY = re.compile(r"^(SUMMARY: AddressSanitizer: \S+) \(<unknown module>\) ?$", re.M)
_FRAME = re.compile(r"\s*#\d+ 0x[0-9a-f]+ ")
_PYTHON_FRAME = re.compile(r" in _?Py[A-Z_]\w* ")
_DESCRIBED = re.compile(r"(?P<name>.+?) \((?P<place>[^()]+)\)")
"""What the core's describe_jit_address says: "Vadd (kernels/vadd.cc:12)"."""
_ON_REPORT = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


def headline(text: str) -> str:
    """The line that says what happened: UBSan's ``runtime error``, else the first SUMMARY."""
    lines = text.splitlines()
    for line in lines:
        if "runtime error:" in line:
            return line.strip()
    summaries = [line.removeprefix("SUMMARY: ") for line in lines if line.startswith("SUMMARY: ")]
    return summaries[0].strip() if summaries else lines[0].strip()


def condense(text: str) -> str:
    """``text`` without the Python interpreter's frames of each stack, nor the shadow bytes."""
    out: list[str] = []
    dropped = 0
    skipping_shadow = False
    for line in text.splitlines():
        if line.startswith("Shadow bytes around the buggy address:"):
            skipping_shadow = True
            out.append("(shadow bytes left out)")
            continue
        if skipping_shadow and (line.startswith((" ", "=>", "Shadow byte legend")) or not line):
            continue
        skipping_shadow = False
        frame = _FRAME.match(line)
        if frame and (dropped or _PYTHON_FRAME.search(line)):
            dropped += 1
            continue
        if dropped:
            out.append(f"    ... {dropped} more frames (the Python interpreter's)")
            dropped = 0
        out.append(line)
    if dropped:
        out.append(f"    ... {dropped} more frames (the Python interpreter's)")
    return "\n".join(out)


def symbolize(text: str, frames: dict[int, tuple[str, str]]) -> str:
    """``text`` with its ``(<unknown module>)`` frames named from ``frames`` (pc -> name, place)."""
    first: list[tuple[str, str]] = []

    def frame(match: re.Match[str]) -> str:
        found = frames.get(int(match["pc"], 16))
        if found is None:
            return match[0]
        first.append(found)
        return f"{match['head']} in {found[0]} {found[1]}"

    text = _UNKNOWN_FRAME.sub(frame, text)
    if first:
        name, place = first[0]
        text = _UNKNOWN_SUMMARY.sub(lambda m: f"{m[1]} {place} in {name}", text)
    return text


def jit_frames(text: str) -> dict[int, tuple[str, str]]:
    """(name, place) of the JIT code at each ``(<unknown module>)`` frame of ``text``, where known.

    ASan prints the address of the call instruction of every frame but the
    first, and the faulting instruction's for the first: each is looked up as is.
    """
    describe: Callable[[int], object] | None = _describer()
    frames: dict[int, tuple[str, str]] = {}
    if describe is None:
        return {}
    for match in _UNKNOWN_FRAME.finditer(text):
        pc = int(match["pc"], 16)
        with contextlib.suppress(Exception):
            described = _DESCRIBED.fullmatch(str(describe(pc) or ""))
            if described:
                frames[pc] = (described["name"], described["place"])
    return frames


def _describer() -> Callable[[int], object] | None:
    """The core's ``describe_jit_address`` (jit_symbolizer.h), once the core is loaded."""
    if "pytest_orcjit._ffi_api" not in sys.modules:
        return None  # no JIT code in this process
    from . import _ffi_api, api

    found = getattr(api, "describe_jit_address", None) or getattr(
        _ffi_api, "describe_jit_address", None
    )
    return found  # type: ignore[no-any-return]


class Reports:
    """Where the tests of pytest process ``owner`` leave sanitizer reports, and reading them."""

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.folder = Path(tempfile.gettempdir()) / f"pytest-orcjit-sanitizer-{owner}"
        # The stderr pytest started with (not a capture file), for ASan's report in-process.
        self.stderr = os.dup(2) if hasattr(ctypes.CDLL(None), "__asan_init") else -1
        self.started: pytest.Item | None = None
        self.read: dict[Path, int] = {}
        self.configured: set[str] = set()
        """The runtimes whose reports go to the files of ``started``."""
        self._prefix = ""
        self._callback = _ON_REPORT(self._on_asan_report)

    def prefix(self, item: pytest.Item) -> str:
        return str(self.folder / hashlib.sha1(item.nodeid.encode()).hexdigest()[:16])

    def start(self, item: pytest.Item) -> None:
        """Send the reports of the loaded runtimes to ``item``'s files (again: of new ones only).

        A runtime truncates its file when it is given the path: one that has
        it already keeps it, and the reports of the phase that it holds.
        """
        self.folder.mkdir(exist_ok=True)  # a runtime dies where it cannot open its file
        if item is not self.started:
            self.started, self._prefix, self.read, self.configured = (
                item,
                self.prefix(item),
                {},
                set(),
            )
        for index, (path, kind) in enumerate(loaded_runtimes()):
            if path in self.configured:
                continue
            self.configured.add(path)
            with contextlib.suppress(OSError, AttributeError):
                runtime = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
                if kind == "ubsan":
                    _initialize_ubsan(runtime)
                runtime["__sanitizer_set_report_path"](f"{self._prefix}-{kind}{index}".encode())
                if kind == "asan":
                    runtime["__asan_set_error_report_callback"](self._callback)

    def take_own(self, item: pytest.Item, last: bool) -> str:
        """The reports this process wrote for ``item`` since the last call; ``last``: clean up."""
        texts = []
        for path in sorted(
            Path(self.folder).glob(f"{Path(self.prefix(item)).name}-*.{os.getpid()}")
        ):
            if path.name.split(".")[0].endswith("-frames"):
                continue
            with contextlib.suppress(OSError), path.open("rb") as stream:
                stream.seek(self.read.get(path, 0))
                data = stream.read()
                self.read[path] = self.read.get(path, 0) + len(data)
                texts.append(data.decode(errors="replace"))
            if last:
                path.unlink(missing_ok=True)
        text = "".join(texts).strip("\n")
        return symbolize(text, jit_frames(text)) if text else ""

    def take_left(self, item: pytest.Item) -> str:
        """The reports a dead child of ``item`` left (removed once read), its JIT frames named."""
        texts, frames = [], {}
        for path in self._files(item, "*"):
            with contextlib.suppress(OSError, ValueError):
                if path.name.split(".")[0].endswith("-frames"):
                    found = json.loads(path.read_text())
                    frames.update({int(pc): tuple(where) for pc, where in found.items()})
                else:
                    texts.append(path.read_text(errors="replace"))
            path.unlink(missing_ok=True)
        return symbolize("".join(texts).strip("\n"), frames)  # type: ignore[arg-type]

    def _files(self, item: pytest.Item, pattern: str) -> list[Path]:
        return sorted(self.folder.glob(f"{Path(self.prefix(item)).name}-{pattern}"))

    def _on_asan_report(self, report: bytes) -> None:
        """ASan's error callback: write down the JIT frames before the process ends."""
        text = report.decode(errors="replace")
        frames = jit_frames(text)
        if frames:
            with contextlib.suppress(OSError):
                data = json.dumps({pc: list(where) for pc, where in frames.items()})
                Path(f"{self._prefix}-frames.{os.getpid()}").write_text(data)
        if (
            os.getpid() == self.owner and self.stderr >= 0
        ):  # in-process: pytest ends here, say why on its stderr
            test = self.started.nodeid if self.started is not None else "?"
            message = MSG_ENDS_PYTEST.format(test=test, report=condense(symbolize(text, frames)))
            with contextlib.suppress(OSError):
                os.write(self.stderr, message.encode())
            shutil.rmtree(self.folder, ignore_errors=True)


class _SourceLocation(ctypes.Structure):
    _fields_ = [("file", ctypes.c_char_p), ("line", ctypes.c_uint32), ("column", ctypes.c_uint32)]


class _OverflowData(ctypes.Structure):
    _fields_ = [("location", _SourceLocation), ("type", ctypes.c_void_p)]


_INT_TYPE = ctypes.create_string_buffer(b"\x00\x00\x0b\x00int\x00")
"""UBSan's TypeDescriptor of int: kind 0 (integer), info 11 (signed, 2**5 bits), its name."""


def _initialize_ubsan(runtime: ctypes.CDLL) -> None:
    """Make a standalone UBSan runtime initialize itself now, with one report to /dev/null.

    gcc's libubsan initializes on its first report, and then sends reports to
    its ``log_path`` (stderr), whatever path was set before: the report path is
    set after this.
    """
    data = _OverflowData(_SourceLocation(b"<orcjit: initializing UBSan>", 1, 1))
    data.type = ctypes.cast(_INT_TYPE, ctypes.c_void_p)
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        runtime["__ubsan_handle_add_overflow"](ctypes.byref(data), 2**31 - 1, 1)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def loaded_runtimes() -> list[tuple[str, str]]:
    """(path, "asan" or "ubsan") of each sanitizer runtime the process has loaded."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            path = line.rstrip("\n").partition("/")[2]
            match = _RUNTIME_FILE.search(path)
            if match and "/" + path not in found:
                kind = match[1] or match[2]
                found["/" + path] = "asan" if kind == "asan" else "ubsan"
    return list(found.items())
