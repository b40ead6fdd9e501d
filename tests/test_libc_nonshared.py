"""atexit, at_quick_exit, pthread_atfork and __stack_chk_fail_local in JIT libraries.

glibc defines these only in libc_nonshared.a, which a linker adds to every
program and shared library, so no library of the process exports them; the
core binds them itself, each to the library that calls it
(csrc/libc_nonshared.h). kernels/atexit.c and kernels/atexit_mixed.cc log every
handler they run to the file the ``event_log`` fixture names.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tvm_ffi.libinfo

from conftest import KERNELS
from pytest_orcjit import ExecutionSession

COMPILERS = ["clang++-22", "g++"]
"""C++ compilers; .c kernels are compiled with the matching C compiler (clang-22, gcc)."""


def events(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def load(session: ExecutionSession, kernels, source: str, *flags: str, compiler: str):
    lib = session.create_library(Path(source).stem)
    lib.add(kernels.object(source, *flags, compiler=compiler))
    return lib


@pytest.mark.parametrize("compiler", COMPILERS)
def test_atexit_handlers_run_when_the_library_closes_newest_first(
    session: ExecutionSession, kernels, event_log: Path, compiler: str
) -> None:
    lib = load(session, kernels, "atexit.c", compiler=compiler)
    assert lib.registered() == 4, "atexit, at_quick_exit and pthread_atfork all succeed"
    assert lib.register_exit() == 0, "atexit from an exported function succeeds too"
    assert events(event_log) == [], "no handler runs while the library is open"
    lib.close()
    assert events(event_log) == ["exit_late", "exit_second", "exit_first"]


@pytest.mark.parametrize("compiler", COMPILERS)
def test_atexit_handlers_interleave_with_static_destructors(
    session: ExecutionSession, kernels, event_log: Path, compiler: str
) -> None:
    lib = load(session, kernels, "atexit_mixed.cc", compiler=compiler)
    assert lib.registered() == 2
    assert events(event_log) == ["a", "b"]
    lib.close()
    # One list per library, as glibc keeps one per shared library: newest registration first.
    assert events(event_log)[2:] == ["second", "~b", "first", "~a"]


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


LOAD_THEN = """
    import ctypes, sys
    from pytest_orcjit import create_session
    session = create_session()
    lib = session.create_library("atexit")
    lib.add(sys.argv[1])
    assert lib.registered() == 4
    if sys.argv[2] == "close":
        lib.close()
    print("loaded", flush=True)
    if sys.argv[3] == "quick_exit":
        ctypes.CDLL(None).quick_exit(0)
"""


@pytest.mark.parametrize("ending", ["exit", "quick_exit"])
def test_a_closed_librarys_handlers_never_run_at_process_exit(
    kernels, event_log: Path, ending: str
) -> None:
    obj = kernels.object("atexit.c", compiler="clang++-22")
    result = run_python(LOAD_THEN, str(obj), "close", ending)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "loaded\n"
    assert events(event_log) == ["exit_second", "exit_first"], "only the close ran handlers"


def test_quick_exit_runs_an_open_librarys_at_quick_exit_handlers(kernels, event_log: Path) -> None:
    obj = kernels.object("atexit.c", compiler="g++")
    result = run_python(LOAD_THEN, str(obj), "open", "quick_exit")
    assert result.returncode == 0, result.stderr
    assert events(event_log) == ["quick"]


def fork_and_wait() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("compiler", COMPILERS)
def test_atfork_handlers_run_while_the_library_is_open(
    session: ExecutionSession, kernels, event_log: Path, compiler: str
) -> None:
    lib = load(session, kernels, "atexit.c", compiler=compiler)
    assert lib.registered() == 4
    fork_and_wait()
    ran = events(event_log)
    assert sorted(ran) == ["child", "parent", "prepare"]
    assert ran[0] == "prepare", "prepare runs before fork, parent and child after"
    lib.close()
    event_log.unlink()
    fork_and_wait()
    assert events(event_log) == [], "a closed library's fork handlers are gone"


@pytest.mark.parametrize("compiler", COMPILERS)
def test_stack_chk_fail_local_is_stack_chk_fail(
    session: ExecutionSession, kernels, compiler: str
) -> None:
    lib = load(session, kernels, "stack_chk_local.c", "-fstack-protector-all", compiler=compiler)
    assert lib.same_as_stack_chk_fail() is True


def find_cudart() -> str | None:
    """The CUDA runtime next to nvcc's CUDA, or wherever the loader finds it."""
    cuda_homes = [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"]
    for home in filter(None, cuda_homes):
        candidate = Path(home) / "lib64" / "libcudart.so"
        if candidate.exists():
            return str(candidate)
    return ctypes.util.find_library("cudart")


NVCC_HOST = """
    import ctypes, sys
    ctypes.CDLL(sys.argv[2], mode=ctypes.RTLD_GLOBAL)  # the runtime the object calls
    from pytest_orcjit import create_session
    session = create_session()
    for i in range(3):
        with session.create_library("cuda_host") as lib:
            lib.add(sys.argv[1])
            assert lib.host_add(i, 1) == i + 1
    print("ok", flush=True)
"""


def test_an_nvcc_host_object_links_and_unregisters_at_close(tmp_path: Path) -> None:
    cudart = find_cudart()
    if shutil.which("nvcc") is None or cudart is None:
        pytest.skip("nvcc or the CUDA runtime (libcudart.so) is not installed")

    obj = tmp_path / "cuda_host.o"
    includes = [tvm_ffi.libinfo.find_include_path(), tvm_ffi.libinfo.find_dlpack_include_path()]
    compile_command = ["nvcc", "-std=c++17", "-Xcompiler", "-fPIC", "-c"]
    compile_command += [f"-I{folder}" for folder in includes]
    compile_command += [str(KERNELS / "cuda_host.cu"), "-o", str(obj)]
    # Without a preloaded sanitizer runtime (.ci/sanitize): nvcc crashes under it.
    env = {name: value for name, value in os.environ.items() if name != "LD_PRELOAD"}
    compiled = subprocess.run(compile_command, capture_output=True, text=True, env=env)
    assert compiled.returncode == 0, compiled.stderr
    # Each close runs the object's atexit handler (it unregisters the device code); none is left
    # for the process's exit, when the library's code is gone.
    result = run_python(NVCC_HOST, str(obj), cudart)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
