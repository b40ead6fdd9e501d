"""Thread-local variables in JIT code: one copy per thread, initial values, alignment, models.

The kernels are tests/kernels/tls_counter.cc (and its C twin tls_counter.c), tls_object.cc
(thread_local objects with constructors and destructors) and tls_extern.cc (a thread_local of
another object, and std::call_once, which uses a thread_local of libstdc++).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from plugin_helpers import make_project

from pytest_orcjit import _ffi_api

THREADS = 4
FIELDS = 10
"""Values each thread of tls_counter.cc/.c reports (see `Report` there)."""


def relocations(path: Path) -> str:
    """What llvm-readelf says about the relocations of the object at ``path``."""
    readelf = shutil.which("llvm-readelf-22") or shutil.which("llvm-readelf")
    if readelf is None:
        pytest.skip("llvm-readelf is not installed")
    return subprocess.run([readelf, "-r", str(path)], capture_output=True, text=True).stdout


def copies() -> int:
    """Per-thread copies of TLS images alive in the process (all sessions)."""
    return int(_ffi_api.thread_local_copies())  # type: ignore[attr-defined]


def check_rows(rows: list[list[int]]) -> None:
    """Each thread saw the initial values and its own, aligned copies."""
    for row in rows:
        assert row[:4] == [41, 42, 41, 7]  # counter bumped twice, local counter once, local 7
        assert row[8] == 7 + 9  # the initial bytes of the 64-byte aligned array
        assert row[9] == 0  # the .tbss array starts zeroed in every thread
        assert row[4] % 8 == 0
        assert row[5] % 64 == 0
        assert row[6] % 128 == 0
        assert row[7] % 8 == 0
    for field in (4, 5, 6, 7):  # every thread has its own copy of each variable
        assert len({row[field] for row in rows}) == len(rows)


def cxx_rows(lib, threads: int = THREADS) -> list[list[int]]:
    values = list(lib.tls_threads(threads))
    return [values[i * FIELDS : (i + 1) * FIELDS] for i in range(threads)]


def c_rows(lib, threads: int = THREADS) -> list[list[int]]:
    out = np.zeros((threads, FIELDS), np.int64)
    lib.tls_c_threads(out)
    return out.tolist()


def test_cxx_thread_locals_per_thread(session, kernels, toolchain) -> None:
    cxx, opt = toolchain
    lib = session.create_library()
    lib.add(kernels.object("tls_counter.cc", opt, compiler=cxx))
    check_rows(cxx_rows(lib))
    here = list(lib.tls_here())  # the calling thread has its own copies too
    assert here[:4] == [41, 42, 41, 7]
    assert lib.tls_bump() == 43
    assert cxx_rows(lib, 2)[0][:2] == [41, 42]  # new threads start again
    lib.close()


def test_c_thread_locals_per_thread(session, kernels, toolchain) -> None:
    cxx, opt = toolchain
    lib = session.create_library()
    lib.add(kernels.object("tls_counter.c", opt, compiler=cxx))
    check_rows(c_rows(lib))
    assert lib.tls_c_bump() == 41
    assert lib.tls_c_bump() == 42
    lib.close()


@pytest.mark.parametrize("cxx", ["clang++-22", "g++"])
@pytest.mark.parametrize("source", ["tls_counter.cc", "tls_counter.c"])
def test_local_dynamic(session, kernels, cxx: str, source: str) -> None:
    """static thread_local variables reached with R_X86_64_TLSLD and R_X86_64_DTPOFF32."""
    obj = kernels.object(source, "-O2", compiler=cxx)
    if "R_X86_64_TLSLD" not in relocations(obj):
        obj = kernels.object(source, "-O2", "-ftls-model=local-dynamic", compiler=cxx)
    assert "R_X86_64_TLSLD" in relocations(obj)
    assert "R_X86_64_DTPOFF32" in relocations(obj)
    lib = session.create_library()
    lib.add(obj)
    check_rows(cxx_rows(lib) if source.endswith(".cc") else c_rows(lib))


def test_python_threads_have_their_own_copies(session, kernels) -> None:
    lib = session.create_library()
    lib.add(kernels.object("tls_counter.cc"))
    results: list[int] = []
    lock = threading.Lock()

    def bump_twice() -> None:
        first, second = lib.tls_bump(), lib.tls_bump()
        with lock:
            results.extend([first, second])

    threads = [threading.Thread(target=bump_twice) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [41] * THREADS + [42] * THREADS


def test_libraries_have_their_own_copies_released_at_close(session, kernels) -> None:
    obj = kernels.object("tls_counter.cc")
    before = copies()
    lib1 = session.create_library("lib1")
    lib2 = session.create_library("lib2")
    lib1.add(obj)
    lib2.add(obj)
    assert [lib1.tls_bump(), lib1.tls_bump()] == [41, 42]
    assert lib2.tls_bump() == 41  # same object, another library: its own copy
    assert copies() == before + 2
    check_rows(cxx_rows(lib2))  # threads that exited freed their copies
    assert copies() == before + 2
    lib1.close()
    assert copies() == before + 1
    check_rows(cxx_rows(lib2))  # later threads of the other library are fine
    assert lib2.tls_bump() == 42
    lib3 = session.create_library("lib3")
    lib3.add(obj)
    assert lib3.tls_bump() == 41  # a new load starts again at the initial value
    lib2.close()
    lib3.close()
    assert copies() == before


def test_reused_image_slot_is_not_taken_for_the_old_one(session, kernels) -> None:
    """A thread that used a closed library's copy gets a fresh one from the next library."""
    obj = kernels.object("tls_counter.cc")
    with ThreadPoolExecutor(max_workers=1) as worker:  # one thread for every call below
        for _ in range(3):
            lib = session.create_library()
            lib.add(obj)
            assert worker.submit(lib.tls_bump).result() == 41
            assert worker.submit(lib.tls_bump).result() == 42
            lib.close()


def test_thread_local_objects(session, kernels, event_log, toolchain) -> None:
    """Constructors run once per thread on first use, destructors at thread exit or close."""
    cxx, opt = toolchain
    lib = session.create_library()
    lib.add(kernels.object("tls_object.cc", opt, compiler=cxx))
    assert lib.tls_object_threads(THREADS) == 2 * THREADS
    assert list(lib.tls_object_counts()) == [2 * THREADS, 2 * THREADS]  # threads have exited
    events = event_log.read_text().split()
    for name in ("tracked", "local", "~tracked", "~local"):
        assert events.count(name) == THREADS
    assert lib.tls_object_touch() == 1
    assert lib.tls_object_touch() == 2
    assert list(lib.tls_object_counts()) == [2 * THREADS + 2, 2 * THREADS]
    lib.close()  # the calling thread's objects are destroyed with the library
    events = event_log.read_text().split()
    for name in ("tracked", "local", "~tracked", "~local"):
        assert events.count(name) == THREADS + 1
    assert events[-2:] == ["~tracked", "~local"]  # newest first: Touch constructs local first


def test_thread_local_of_another_object_and_of_the_process(session, kernels, toolchain) -> None:
    cxx, opt = toolchain
    lib = session.create_library()
    lib.add(kernels.object("tls_counter.cc", opt, compiler=cxx))
    lib.add(kernels.object("tls_extern.cc", opt, compiler=cxx))
    assert lib.tls_bump() == 41
    assert lib.tls_extern_bump() == 42  # the same variable, defined by the other object
    assert lib.tls_bump() == 43
    assert lib.tls_once(THREADS) == 101  # std::call_once uses libstdc++'s thread_locals
    # The other way round, as bytes: the definition is linked while the user's link waits for it.
    lib = session.create_library()
    lib.add(kernels.read("tls_extern.cc", opt, compiler=cxx))
    lib.add(kernels.read("tls_counter.cc", opt, compiler=cxx))
    assert [lib.tls_extern_bump(), lib.tls_bump(), lib.tls_extern_bump()] == [41, 42, 43]
    check_rows(cxx_rows(lib))


@pytest.mark.parametrize("cxx", ["clang++-22", "g++"])
def test_debug_info_of_thread_locals(session, kernels, cxx: str) -> None:
    """-g objects describe thread_locals with R_X86_64_DTPOFF relocations in .debug_info."""
    obj = kernels.object("tls_counter.cc", "-O0", "-g", compiler=cxx)
    assert "DTPOFF" in relocations(obj)
    lib = session.create_library()
    lib.add(obj)
    check_rows(cxx_rows(lib))


@pytest.mark.parametrize(
    ("flags", "relocation", "advice"),
    [
        (["-ftls-model=initial-exec"], "R_X86_64_GOTTPOFF", "-ftls-model=initial-exec"),
        (["-ftls-model=local-exec"], "R_X86_64_TPOFF32", "-ftls-model=local-exec"),
        (["-mtls-dialect=gnu2"], "R_X86_64_GOTPC32_TLSDESC", "-mtls-dialect=gnu2"),
    ],
    ids=["initial-exec", "local-exec", "tls-descriptors"],
)
def test_unsupported_tls_models_are_refused(
    session, kernels, flags: list[str], relocation: str, advice: str
) -> None:
    obj = kernels.object("tls_counter.cc", *flags, compiler="g++")
    lib = session.create_library()
    with pytest.raises(ValueError, match="thread_local") as raised:
        lib.add(obj)
    message = str(raised.value)
    assert str(obj) in message
    assert relocation in message
    assert advice in message


README_KERNEL = """\
#include <tvm/ffi/function.h>
thread_local int64_t calls = 0;  // per thread, and fresh in every test

TVM_FFI_DLL_EXPORT_TYPED_FUNC(count_calls, []() -> int64_t { return ++calls; });
"""

README_TESTS = """\
import threading

import pytest


@pytest.mark.parametrize("n", range(3))
def test_calls_per_thread(orcjit_lib, n):
    assert orcjit_lib.count_calls() == 1
    assert orcjit_lib.count_calls() == 2
    seen = []
    thread = threading.Thread(target=lambda: seen.append(orcjit_lib.count_calls()))
    thread.start()
    thread.join()
    assert seen == [1]  # another thread, another copy
"""


@pytest.mark.parametrize("isolation", ["none", "fork"])
def test_readme_example_with_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, isolation: str
) -> None:
    """README's thread_local example: fresh in every test, in-process and in forked tests."""
    project = make_project(pytester, monkeypatch)
    project.write("kernels/calls.cc", README_KERNEL)
    project.write("test_calls.py", README_TESTS)
    project.ini("orcjit_sources = kernels/calls.cc", isolation=isolation)
    result = project.pytester.runpytest_subprocess()
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("declaration", "name", "message"),
    [
        ("extern __thread void* stdin;", "stdin", "the process defines it as an ordinary variable"),
        (
            "extern __thread long orcjit_no_tls __attribute__((weak));",
            "orcjit_no_tls",
            "nothing in the process defines as thread_local",
        ),
    ],
    ids=["ordinary-variable", "undefined"],
)
def test_thread_local_the_process_does_not_have(
    session, tmp_path: Path, declaration: str, name: str, message: str
) -> None:
    """A thread_local declaration that matches no thread_local definition fails the link."""
    source = tmp_path / "k.c"
    source.write_text(f"{declaration}\nlong* __tvm_ffi_use(void) {{ return (long*)&{name}; }}\n")
    obj = tmp_path / "k.o"
    subprocess.run(["gcc", "-c", "-fPIC", "-O2", str(source), "-o", str(obj)], check=True)
    lib = session.create_library()
    lib.add(obj)
    with pytest.raises(RuntimeError, match=message) as raised:
        lib.get_function("use")
    assert str(obj) in str(raised.value)


def test_crashing_thread_local_destructor_fails_close(session, kernels, event_log) -> None:
    lib = session.create_library("crashy")
    lib.add(kernels.object("tls_object.cc"))
    assert lib.tls_object_touch() == 1
    assert lib.tls_object_arm_crash() == 1  # constructed last: destroyed first, and crashes
    with pytest.raises(RuntimeError, match=r"thread_local destructor of library 'crashy'.*SIGSEGV"):
        lib.close()
    assert "~tracked" not in event_log.read_text().split()  # the other destructors did not run
    lib.close()  # closed all the same
    with pytest.raises(RuntimeError, match="is closed"):
        lib.tls_object_touch()
