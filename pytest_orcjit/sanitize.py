"""Sanitizers for kernels: ``--orcjit-sanitize=address,undefined``, their flags, runtimes and reports.

The option (ini ``orcjit_sanitize``, marker ``sanitize=``) adds the sanitizer
flags to the compile of every kernel source (the flags are part of the cache
key, so sanitized objects are cached apart) and makes the runtime available:

* AddressSanitizer's runtime must be the first library of the process. The
  plugin restarts pytest once, before collection (``os.execve`` from
  ``pytest_cmdline_main``), with the runtime of the C++ compiler in
  ``LD_PRELOAD`` and the ``ASAN_OPTIONS`` a Python process needs; pytest-xdist
  workers inherit both. ``RESTARTED`` guards against a second restart.
* UndefinedBehaviorSanitizer's runtime is loaded like any shared library
  (``kernel_libraries``), unless the process has one already (clang's ASan
  runtime holds UBSan's).

Every test that runs with a runtime loaded sends the runtimes' reports to a
file of its own (``__sanitizer_set_report_path``); after each phase the
process that ran it turns a report into the phase's failure. AddressSanitizer
ends the process after its report: its error callback first writes down what
the JIT frames of the report are (ASan prints them as ``(<unknown module>)``),
and the pytest process, which sees the forked test die, fails it with the
report, those frames named. In-process (``--orcjit-isolation=none``) the report
of a fatal error is also written to the stderr pytest started with.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest

from .validators import Picked, invalid

SANITIZERS = ("address", "undefined")
HELP_SANITIZE = (
    "compile kernels with sanitizers, comma-separated: address (pytest restarts itself once "
    "with AddressSanitizer's runtime preloaded), undefined; a report fails its test "
    "(default: none)"
)
FLAGS = {
    "address": ("-fsanitize=address", "-fno-omit-frame-pointer"),
    "undefined": ("-fsanitize=undefined",),
}
LINE_TABLES = "-g1"
"""Added with any sanitizer, before the user's flags (a later -g wins): reports name lines."""
RESTARTED = "PYTEST_ORCJIT_ASAN_RUNTIME"
"""Set by the restart to the runtime it preloaded."""
ASAN_OPTIONS = "detect_leaks=0"
"""Before the user's own ASAN_OPTIONS: Python does not free everything at exit."""
UBSAN_CHECKS = frozenset(
    "alignment bool bounds builtin enum float-cast-overflow float-divide-by-zero function "
    "implicit-conversion integer integer-divide-by-zero nonnull-attribute null nullability "
    "object-size pointer-overflow return returns-nonnull-attribute shift shift-base "
    "shift-exponent signed-integer-overflow unreachable unsigned-integer-overflow vla-bound "
    "vptr".split()
)
"""-fsanitize= names that need the UBSan runtime, besides ``undefined`` itself."""

MSG_NOT_PRELOADED = (
    "orcjit: {origin} asks for AddressSanitizer, whose runtime must be loaded first in the "
    "process: give --orcjit-sanitize=address (or ini orcjit_sanitize) so that pytest restarts "
    "itself with it, or start pytest with LD_PRELOAD={runtime} ASAN_OPTIONS=detect_leaks=0"
)
MSG_PRELOAD_FAILED = (
    "orcjit: pytest was restarted with LD_PRELOAD={runtime} for --orcjit-sanitize=address, but "
    "the AddressSanitizer runtime is not in the process (the loader's error is above)"
)
MSG_NOT_COMMAND = (
    "orcjit: --orcjit-sanitize=address needs AddressSanitizer's runtime loaded first; pytest "
    "restarts itself with it only when run as a command, not from pytest.main(): start Python "
    "with LD_PRELOAD={runtime} ASAN_OPTIONS=detect_leaks=0"
)
MSG_NO_RUNTIME = (
    "orcjit: --orcjit-sanitize=address: cannot find the AddressSanitizer runtime of the C++ "
    "compiler {compiler!r}: {error}"
)
MSG_REPORT = "{headline}\n\norcjit: the sanitizer's report, in the {when} phase:\n{report}"

_RUNTIME_FILE = re.compile(r"lib(?:clang_rt\.(asan|ubsan_standalone)-\w+|(asan|ubsan))\.so[.\d]*$")
_UNKNOWN_FRAME = re.compile(r"^(?P<head>\s*#\d+ 0x(?P<pc>[0-9a-f]+)) +\(<unknown module>\)$", re.M)
_UNKNOWN_SUMMARY = re.compile(r"^(SUMMARY: AddressSanitizer: \S+) \(<unknown module>\) ?$", re.M)
_REPORTS = pytest.StashKey["Reports"]()
_ON_REPORT = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


def parse(picked: Picked) -> tuple[str, ...]:
    """``"address,undefined"`` (or a list) -> the sanitizers, in ``SANITIZERS`` order."""
    value = picked.value
    if value is None:
        return ()
    names = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise invalid("sanitize", value, picked.origin, "names separated by commas, or a list")
    for name in names:
        if name not in SANITIZERS:
            expected = f"one of {', '.join(SANITIZERS)} (separated by commas)"
            raise invalid("sanitizer", name, picked.origin, expected)
    return tuple(name for name in SANITIZERS if name in names)


def flags(sanitizers: Iterable[str]) -> tuple[str, ...]:
    """The compile flags of ``sanitizers`` (none for none)."""
    chosen = [flag for name in sanitizers for flag in FLAGS[name]]
    return (*chosen, LINE_TABLES) if chosen else ()


def named(compile_flags: Iterable[str]) -> set[str]:
    """The sanitizers of ``SANITIZERS`` whose runtime objects compiled with these flags call."""
    found: set[str] = set()
    for flag in compile_flags:
        for prefix, add in (("-fsanitize=", True), ("-fno-sanitize=", False)):
            if flag.startswith(prefix):
                for name in flag.removeprefix(prefix).split(","):
                    kind = "undefined" if name in UBSAN_CHECKS else name
                    if kind in SANITIZERS:
                        (found.add if add else found.discard)(kind)
    return found


# The runtimes: AddressSanitizer's by a restart, UBSan's as a shared library.


def restart_with_address_runtime(config: pytest.Config, cxx: Sequence[str]) -> None:
    """Restart pytest with the ASan runtime of ``cxx`` preloaded, unless it is loaded already.

    Raises pytest.UsageError where that cannot be done.
    """
    if getattr(config.option, "help", False) or getattr(config.option, "version", False):
        return
    if address_loaded():
        return
    runtime = os.environ.get(RESTARTED) or address_runtime(cxx)
    if os.environ.get(RESTARTED):
        raise pytest.UsageError(MSG_PRELOAD_FAILED.format(runtime=runtime))
    if list(config.invocation_params.args) != sys.argv[1:]:
        raise pytest.UsageError(MSG_NOT_COMMAND.format(runtime=runtime))
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(filter(None, [runtime, env.get("LD_PRELOAD")]))
    env["ASAN_OPTIONS"] = ":".join(filter(None, [ASAN_OPTIONS, env.get("ASAN_OPTIONS")]))
    env[RESTARTED] = runtime
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def address_runtime(cxx: Sequence[str]) -> str:
    """The path of the ASan runtime of ``cxx`` (clang's libclang_rt.asan, gcc's libasan)."""
    from . import shared_libraries
    from .toolchain import Compiler, CompilerNotFound

    try:
        compiler = Compiler.probe(cxx)
        name = f"libclang_rt.asan-{platform.machine()}.so"
        if "clang" not in compiler.identity:
            name = "libasan.so"
        return shared_libraries.find(name, compiler.command)[0]
    except (CompilerNotFound, ValueError) as err:
        message = MSG_NO_RUNTIME.format(compiler=" ".join(cxx), error=err)
        raise pytest.UsageError(message) from None


def address_loaded() -> bool:
    """Whether the process has an AddressSanitizer runtime."""
    return hasattr(ctypes.CDLL(None), "__asan_init")


def undefined_runtimes(compile_flags: Sequence[str], compilers: Callable[[], Iterable]) -> list:
    """``kernel_libraries.Needed`` entries: the UBSan runtime of each of ``compilers()``.

    None where the flags name no UBSan check, or the process has a UBSan runtime.
    """
    if "undefined" not in named(compile_flags):
        return []
    if hasattr(ctypes.CDLL(None), "__ubsan_handle_add_overflow"):
        return []
    found = []
    for compiler in compilers():
        name = f"libclang_rt.ubsan_standalone-{platform.machine()}.so"
        if "clang" not in compiler.identity:
            name = "ubsan"
        found.append((name, compiler.command, f"-fsanitize=undefined of {compiler.command[0]}"))
    return found


def configure(config: pytest.Config, owner: int) -> None:
    """Set up the reports of the run of pytest process ``owner``; drop the preload for compilers.

    An xdist controller keeps ``LD_PRELOAD`` for the workers it starts; other
    processes take it out of the environment of the compilers they run.
    """
    config.stash[_REPORTS] = Reports(owner)
    runtime = os.environ.get(RESTARTED)
    controller = config.getoption("dist", "no") != "no" and not hasattr(config, "workerinput")
    if runtime and not controller:
        kept = [path for path in os.environ.get("LD_PRELOAD", "").split(":") if path != runtime]
        os.environ["LD_PRELOAD"] = ":".join(kept)


def unconfigure(config: pytest.Config) -> None:
    reports = config.stash.get(_REPORTS, None)
    if reports is not None and os.getpid() == reports.owner:
        shutil.rmtree(reports.folder, ignore_errors=True)


# Reports: one file per test, runtime and process, turned into the test's failure.


def start(item: pytest.Item, sanitizers: Iterable[str], origin: str) -> None:
    """Send the reports of the process's sanitizer runtimes to ``item``'s files.

    Fails the test where it asks for AddressSanitizer and the process has none.
    """
    wanted = set(sanitizers)
    if "address" in wanted and not address_loaded():
        runtime = os.environ.get(RESTARTED) or "<libasan.so or libclang_rt.asan-*.so>"
        pytest.fail(MSG_NOT_PRELOADED.format(origin=origin, runtime=runtime), pytrace=False)
    reports = item.config.stash.get(_REPORTS, None)
    if reports is not None and (wanted or os.environ.get(RESTARTED)):
        reports.start(item)


def fail_on_report(item: pytest.Item, call: pytest.CallInfo[None], forked: bool) -> None:
    """Make ``call`` a failure with the sanitizer reports of its phase, if there are any.

    ``forked``: this is the pytest process of a forked test (whose child died
    if it gets here with a report).
    """
    reports = item.config.stash.get(_REPORTS, None)
    if reports is None or (not forked and reports.started is not item):
        return
    text = reports.take_left(item) if forked else reports.take_own(item, call.when == "teardown")
    if not text:
        return
    text = text.replace(f"{item.config.rootpath}{os.sep}", "")
    message = MSG_REPORT.format(headline=headline(text), when=call.when, report=text)
    if call.excinfo is not None and not forked:
        message += "\n\nand the test raised:\n" + call.excinfo.exconly()
    elif call.excinfo is not None:
        message += "\n\n" + str(call.excinfo.value)
    call.excinfo = pytest.CallInfo.from_call(
        lambda: pytest.fail(message, pytrace=False), call.when
    ).excinfo


def headline(text: str) -> str:
    """The line that says what happened: UBSan's ``runtime error``, else the first SUMMARY."""
    lines = text.splitlines()
    for line in lines:
        if "runtime error:" in line:
            return line.strip()
    summaries = [line.removeprefix("SUMMARY: ") for line in lines if line.startswith("SUMMARY: ")]
    return summaries[0].strip() if summaries else lines[0].strip()


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
    """What the JIT code at each ``(<unknown module>)`` frame of ``text`` is, where known."""
    try:
        from . import api

        describe = api.describe_jit_address  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return {}
    frames: dict[int, tuple[str, str]] = {}
    for match in _UNKNOWN_FRAME.finditer(text):
        pc = int(match["pc"], 16)
        with contextlib.suppress(Exception):
            found = describe(pc)
            if found:
                frames[pc] = found
    return frames


class Reports:
    """Where the tests of pytest process ``owner`` leave sanitizer reports, and reading them."""

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.folder = Path(tempfile.gettempdir()) / f"pytest-orcjit-sanitizer-{owner}"
        self.stderr = os.dup(2)  # the stderr pytest started with, not a capture file
        self.started: pytest.Item | None = None
        self.read: dict[Path, int] = {}
        self._prefix = ""
        self._callback = _ON_REPORT(self._on_asan_report)

    def prefix(self, item: pytest.Item) -> str:
        return str(self.folder / hashlib.sha1(item.nodeid.encode()).hexdigest()[:16])

    def start(self, item: pytest.Item) -> None:
        self.folder.mkdir(exist_ok=True)  # a runtime dies where it cannot open its file
        self.started, self._prefix, self.read = item, self.prefix(item), {}
        for path, kind in loaded_runtimes():
            with contextlib.suppress(OSError, AttributeError):
                runtime = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
                report_path = f"{self._prefix}-{kind}".encode()
                runtime["__sanitizer_set_report_path"](report_path)
                if kind == "asan":
                    runtime["__asan_set_error_report_callback"](self._callback)

    def take_own(self, item: pytest.Item, last: bool) -> str:
        """The reports this process wrote for ``item`` since the last call; ``last``: clean up."""
        texts = []
        for path in sorted(Path(self.folder).glob(f"{Path(self.prefix(item)).name}-*.{os.getpid()}")):
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
        for path in sorted(self.folder.glob(f"{Path(self.prefix(item)).name}-*")):
            with contextlib.suppress(OSError, ValueError):
                if path.name.split(".")[0].endswith("-frames"):
                    found = json.loads(path.read_text())
                    frames.update({int(pc): tuple(where) for pc, where in found.items()})
                else:
                    texts.append(path.read_text(errors="replace"))
            path.unlink(missing_ok=True)
        return symbolize("".join(texts).strip("\n"), frames)  # type: ignore[arg-type]

    def _on_asan_report(self, report: bytes) -> None:
        """ASan's error callback: write down the JIT frames before the process ends."""
        text = report.decode(errors="replace")
        frames = jit_frames(text)
        if frames:
            with contextlib.suppress(OSError):
                data = json.dumps({pc: list(where) for pc, where in frames.items()})
                Path(f"{self._prefix}-frames.{os.getpid()}").write_text(data)
        if os.getpid() == self.owner:  # in-process: pytest ends here, say why on its stderr
            with contextlib.suppress(OSError):
                os.write(self.stderr, symbolize(text, frames).encode())


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


def of_test(picked: Picked, compile_flags: Iterable[str]) -> tuple[set[str], str]:
    """A test's sanitizers (its setting's and those its flags name) and where they came from."""
    from_flags = named(compile_flags)
    if "address" in picked.value or "address" not in from_flags:
        return set(picked.value) | from_flags, picked.origin
    return set(picked.value) | from_flags, "-fsanitize=address in the flags"
