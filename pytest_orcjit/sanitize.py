"""Sanitizers for kernels: ``--orcjit-sanitize=address,undefined``, flags, runtimes, reports.

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

A sanitizer's report fails the phase of the test it came from, the report in
its longrepr (:mod:`pytest_orcjit.sanitizer_reports` collects them). In-process
(``--orcjit-isolation=none``) AddressSanitizer's report ends pytest, and is
written to the stderr pytest started with.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence

import pytest

from . import shared_libraries
from .sanitizer_reports import Reports, condense, headline
from .toolchain import Compiler, CompilerNotFound
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
_UBSAN_CHECK_NAMES = (
    "alignment bool bounds builtin enum float-cast-overflow float-divide-by-zero function "
    "implicit-conversion integer integer-divide-by-zero nonnull-attribute null nullability "
    "object-size pointer-overflow return returns-nonnull-attribute shift shift-base "
    "shift-exponent signed-integer-overflow unreachable unsigned-integer-overflow vla-bound vptr"
)
UBSAN_CHECKS = frozenset(_UBSAN_CHECK_NAMES.split())
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

_REPORTS = pytest.StashKey["Reports"]()


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


def restart_if_asked(
    config: pytest.Config, picked: Picked, cxx: Callable[[], Sequence[str]]
) -> None:
    """Restart pytest with the ASan runtime of ``cxx()`` preloaded, if ``picked`` asks for ASan.

    Nothing happens where the runtime is loaded already. Raises pytest.UsageError
    for a bad value, and where the restart cannot be done.
    """
    try:
        sanitizers = parse(picked)
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    if "address" not in sanitizers or address_loaded():
        return
    if getattr(config.option, "help", False) or getattr(config.option, "version", False):
        return
    runtime = os.environ.get(RESTARTED) or address_runtime(cxx())
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
    os.execve(sys.executable, [sys.executable, *_interpreter_args()], env)


def _interpreter_args() -> list[str]:
    """The arguments this Python was started with (``-m pytest ...``, ``.../bin/pytest ...``)."""
    if hasattr(sys, "orig_argv"):  # Python 3.10+
        return list(sys.orig_argv[1:])
    script, *args = sys.argv
    if os.path.basename(script) == "__main__.py":  # python -m pytest
        return ["-m", os.path.basename(os.path.dirname(script)), *args]
    return [script, *args]


def address_runtime(cxx: Sequence[str]) -> str:
    """The path of the ASan runtime of ``cxx`` (clang's libclang_rt.asan, gcc's libasan)."""
    try:
        compiler = Compiler.probe(cxx)
        name = f"libclang_rt.asan-{platform.machine()}.so"
        if "clang" not in compiler.identity:
            name = "libasan.so"
        return shared_libraries.locate(name, compiler.command)[0]
    except (CompilerNotFound, ValueError) as err:
        message = MSG_NO_RUNTIME.format(compiler=" ".join(cxx), error=err)
        raise pytest.UsageError(message) from None


def address_loaded() -> bool:
    """Whether the process has an AddressSanitizer runtime."""
    return hasattr(ctypes.CDLL(None), "__asan_init")


def undefined_runtimes(
    compile_flags: Sequence[str], compilers: Callable[[], Iterable[Compiler]]
) -> list[tuple[str, tuple[str, ...], str]]:
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


def finish(config: pytest.Config) -> None:
    """Remove the run's report files (in the pytest process, at the end of the session)."""
    reports = config.stash.get(_REPORTS, None)
    if reports is not None and os.getpid() == reports.owner:
        shutil.rmtree(reports.folder, ignore_errors=True)
        if reports.stderr >= 0:
            os.close(reports.stderr)
            reports.stderr = -1


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


def after_compile(item: pytest.Item, cflags: Sequence[str] | str) -> None:
    """``orcjit_compile`` loaded the runtimes its flags call for: send their reports to the test's
    files too (and fail it where they ask for an AddressSanitizer the process has not)."""
    wanted = named(shlex.split(cflags) if isinstance(cflags, str) else cflags)
    if wanted:
        start(item, wanted, "orcjit_compile(cflags=...)")


def fail_on_report(item: pytest.Item, call: pytest.CallInfo[None], forked: bool) -> str | None:
    """Make ``call`` a failure with the sanitizer reports of its phase, if there are any.

    ``forked``: this is the pytest process of a forked test, whose child died
    if it gets here with a report (the report comes before why it died). A
    phase that raised by itself keeps its error: the report is returned, for a
    section of the test's report.
    """
    reports = item.config.stash.get(_REPORTS, None)
    if reports is None or (not forked and reports.started is not item):
        return None
    text = reports.take_left(item) if forked else reports.take_own(item, call.when == "teardown")
    if not text:
        return None
    text = condense(text.replace(f"{item.config.rootpath}{os.sep}", ""))
    message = MSG_REPORT.format(headline=headline(text), when=call.when, report=text)
    if call.excinfo is not None and not forked:
        return message
    if call.excinfo is not None:
        message += "\n\n" + str(call.excinfo.value)
    call.excinfo = pytest.CallInfo.from_call(
        lambda: pytest.fail(message, pytrace=False), call.when
    ).excinfo
    return None


def of_test(picked: Picked, compile_flags: Iterable[str]) -> tuple[set[str], str]:
    """A test's sanitizers (its setting's and those its flags name) and where they came from."""
    from_flags = named(compile_flags)
    if "address" in picked.value or "address" not in from_flags:
        return set(picked.value) | from_flags, picked.origin
    return set(picked.value) | from_flags, "-fsanitize=address in the flags"
