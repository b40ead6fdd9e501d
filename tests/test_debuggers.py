"""Debuggers and profilers see JIT code: gdb through the GDB JIT interface, perf through a map.

Objects compiled with -g are registered with the GDB JIT interface when they link (gdb then names
a kernel's functions, lines and locals, and unwinds through them) and unregistered when their
library closes; objects without debug information register nothing. With PYTEST_ORCJIT_PERF_MAP=1
(``--orcjit-perf-map``) every process writes /tmp/perf-<pid>.map.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_helpers import core_available, make_project

from pytest_orcjit import _ffi_api, create_session, settings

pytestmark = pytest.mark.skipif(not core_available(), reason="the native core is not built")

GDB = shutil.which("gdb")
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed (apt-get install gdb)")

KERNEL = Path(__file__).parent / "kernels" / "debug_info.cc"
DEBUG_FLAGS = ("-g", "-O0")
FUNCTION_SECTION = ".text._Z12SumOfTriplesl"
"""SumOfTriples's section with -ffunction-sections (the name both compilers give it)."""

CRASH_SCRIPT = """\
import sys
import pytest_orcjit

module = pytest_orcjit.default_session().load_module(sys.argv[1])
print("sum", module.sum_of_triples(4))
module.write_through_null(21)
"""


def line_of(mark: str) -> int:
    """The line of debug_info.cc that carries ``// line: <mark>``."""
    for number, line in enumerate(KERNEL.read_text().splitlines(), start=1):
        if line.endswith(f"// line: {mark}"):
            return number
    raise AssertionError(f"debug_info.cc has no line marked {mark!r}")


def gdb(*commands: str, args: list[str], cwd: Path | None = None) -> str:
    """gdb's output for a batch run of ``args`` with these commands (pending breakpoints on)."""
    command = [GDB or "gdb", "-nx", "-batch", "-ex", "set breakpoint pending on"]
    for line in commands:
        command += ["-ex", line]
    result = subprocess.run(
        [*command, "--args", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    return result.stdout + result.stderr


def registered() -> list[tuple[int, int]]:
    """[(address, size)] of the objects in the core's GDB JIT descriptor."""
    return [(int(a), int(s)) for a, s in _ffi_api.debug_objects_registered()]  # type: ignore[attr-defined]


def section_addresses(image: bytes) -> dict[str, int]:
    """The sh_addr of each section of a 64-bit little-endian ELF image, by name."""
    (shoff,) = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", image, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", image, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    addresses = {}
    for name, _type, _flags, address, _offset, _size in headers:
        end = image.index(b"\0", names_at + name)
        addresses[image[names_at + name : end].decode()] = address
    return addresses


# gdb


@needs_gdb
@pytest.mark.parametrize("cxx", ["clang++-22", "g++"])
def test_gdb_backtrace_of_a_crash_names_the_kernel_and_its_line(kernels, tmp_path, cxx):
    obj = kernels.object("debug_info.cc", *DEBUG_FLAGS, compiler=cxx)
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    out = gdb("run", "bt", args=[sys.executable, str(script), str(obj)])
    # The faulting frame, with its argument, file and line; and the export that called it.
    assert "WriteThroughNull (value=21) at" in out, out
    assert f"debug_info.cc:{line_of('null write')}" in out, out
    assert "__tvm_ffi_write_through_null" in out, out
    # bt goes on through the JIT frames into the process's (tvm-ffi's, Python's).
    assert "_PyEval_EvalFrameDefault" in out or "PyObject" in out, out


@needs_gdb
def test_gdb_breaks_in_the_kernel_and_prints_its_locals(kernels, tmp_path):
    obj = kernels.object("debug_info.cc", *DEBUG_FLAGS)
    script = tmp_path / "run.py"
    script.write_text(CRASH_SCRIPT.replace("module.write_through_null(21)\n", ""))
    line = line_of("accumulate")
    out = gdb(
        f"break debug_info.cc:{line} if i == 2",
        "run",
        "print triple",
        "print total",
        "bt 3",
        "kill",
        args=[sys.executable, str(script), str(obj)],
    )
    assert "SumOfTriples (count=4) at" in out and f"debug_info.cc:{line}" in out, out
    assert "$1 = 6" in out, out  # triple = 2 * 3
    assert "$2 = 3" in out, out  # total = 0 + 3
    assert "__tvm_ffi_sum_of_triples" in out, out


@needs_gdb
def test_gdb_stops_in_a_kernel_under_pytest_in_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """The recipe of docs/debuggers.md: gdb --args python -m pytest --orcjit-isolation=none."""
    project = make_project(pytester, monkeypatch)
    project.write("kernels/debug_info.cc", KERNEL.read_text())
    project.write(
        "test_kernel.py",
        "def test_sum(orcjit_lib):\n    assert orcjit_lib.sum_of_triples(4) == 18\n",
    )
    project.ini("orcjit_sources = kernels/debug_info.cc", "orcjit_cflags = -g -O0", isolation=None)
    line = line_of("accumulate")
    out = gdb(
        f"break debug_info.cc:{line} if i == 3",
        "run",
        "print total",
        "bt 2",
        "kill",
        args=[
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--orcjit-isolation=none",
            "test_kernel.py",
        ],
        cwd=project.path,
    )
    assert "SumOfTriples (count=4) at" in out and f"debug_info.cc:{line}" in out, out
    assert "$1 = 9" in out, out  # 0 + 3 + 6


# The descriptor


def test_closing_a_library_unregisters_its_object(session, kernels):
    before = registered()
    obj = kernels.object("debug_info.cc", *DEBUG_FLAGS, "-ffunction-sections")
    library = session.create_library()
    library.add(obj)
    address = library.address_of_sum_of_triples()
    after = registered()
    assert len(after) == len(before) + 1
    (symfile, size), *_ = after  # the newest first
    assert size == obj.stat().st_size
    image = ctypes.string_at(symfile, size)
    assert image[:4] == b"\x7fELF"
    # The registered copy says where the kernel's code is: where the function is.
    assert section_addresses(image)[FUNCTION_SECTION] == address
    library.close()
    assert registered() == before


def test_every_load_registers_its_own_copy(session, kernels):
    """A second load links a prepared copy of the first's graph, and bytes link from a buffer."""
    before = registered()
    obj = kernels.object("debug_info.cc", *DEBUG_FLAGS, "-ffunction-sections")
    libraries = [session.create_library() for _ in range(3)]
    for library, source in zip(libraries, (obj, obj, obj.read_bytes())):
        library.add(source)
        address = library.address_of_sum_of_triples()
        symfile, size = registered()[0]
        assert section_addresses(ctypes.string_at(symfile, size))[FUNCTION_SECTION] == address
    assert len(registered()) == len(before) + 3
    for library in libraries:
        library.close()
    assert registered() == before


def test_closing_the_session_unregisters_its_objects(kernels):
    before = registered()
    session = create_session()
    module = session.load_module(kernels.object("debug_info.cc", *DEBUG_FLAGS))
    assert module.sum_of_triples(3) == 9
    assert len(registered()) == len(before) + 1
    session.close()
    assert registered() == before


def test_objects_without_debug_information_register_nothing(session, kernels):
    before = registered()
    module = session.load_module(kernels.object("debug_info.cc", "-O2"))
    assert module.sum_of_triples(3) == 9
    assert registered() == before


def test_registration_can_be_turned_off(kernels, monkeypatch):
    monkeypatch.setenv("PYTEST_ORCJIT_DEBUG_REGISTRATION", "0")
    before = registered()
    with create_session() as session:
        session.load_module(kernels.object("debug_info.cc", *DEBUG_FLAGS))
        assert registered() == before


def test_a_forked_child_registers_and_unregisters_its_own(session, kernels):
    obj = kernels.object("debug_info.cc", *DEBUG_FLAGS)
    parent = session.create_library()
    parent.add(obj)
    assert parent.sum_of_triples(2) == 3
    before = registered()
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 when the descriptor is right
        ok = registered() == before
        library = session.create_library()
        library.add(obj)
        ok = ok and library.sum_of_triples(2) == 3 and len(registered()) == len(before) + 1
        library.close()
        ok = ok and registered() == before
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert registered() == before
    parent.close()


# perf maps

PERF_SCRIPT = """\
import os
import sys
import pytest_orcjit

session = pytest_orcjit.create_session()
module = session.load_module(sys.argv[1])
print("parent", os.getpid(), module.address_of_sum_of_triples(), flush=True)
pid = os.fork()
if pid == 0:
    other = session.load_module(sys.argv[1])
    print("child", os.getpid(), other.address_of_sum_of_triples(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def perf_map(pid: int) -> dict[int, tuple[int, str]]:
    """/tmp/perf-<pid>.map as {address: (size, name)}; the file is removed."""
    path = Path(f"/tmp/perf-{pid}.map")
    entries = {}
    for line in path.read_text().splitlines():
        start, size, name = line.split(" ", 2)
        entries[int(start, 16)] = (int(size, 16), name)
    path.unlink()
    return entries


def test_perf_map_names_the_functions_of_each_process(kernels, tmp_path):
    obj = kernels.object("debug_info.cc", "-O2")
    script = tmp_path / "perf.py"
    script.write_text(PERF_SCRIPT)
    env = {**os.environ, settings.PERF_MAP_ENV: "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(obj)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    runs = {
        kind: (int(pid), int(address))
        for kind, pid, address in map(str.split, result.stdout.splitlines())
    }
    parent_pid, parent_address = runs["parent"]
    child_pid, child_address = runs["child"]
    parent, child = perf_map(parent_pid), perf_map(child_pid)
    # Each process lists the kernel at the address its code calls it by, demangled, sized.
    assert parent[parent_address][1] == "SumOfTriples(long)"
    assert parent[parent_address][0] > 0
    assert child[child_address][1] == "SumOfTriples(long)"
    # The child's own map lists what it inherited too; the parent's does not list the child's.
    assert child[parent_address][1] == "SumOfTriples(long)"
    assert child_address not in parent
    assert any(name == "__tvm_ffi_sum_of_triples" for _, name in parent.values())


def test_no_perf_map_without_the_setting(kernels, tmp_path):
    script = tmp_path / "perf.py"
    script.write_text(PERF_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != settings.PERF_MAP_ENV}
    obj = kernels.object("debug_info.cc", "-O2")
    result = subprocess.run(
        [sys.executable, str(script), str(obj)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        assert not Path(f"/tmp/perf-{line.split()[1]}.map").exists()


PLUGIN_TEST = """\
import os

def test_kernel(orcjit_lib):
    with open("pids.txt", "a") as out:
        print(os.getpid(), orcjit_lib.address_of_sum_of_triples(), os.getppid(), file=out)
"""


@pytest.mark.parametrize("where", ["cli", "ini"])
def test_plugin_option_writes_the_forked_childs_map(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str
):
    monkeypatch.delenv(settings.PERF_MAP_ENV, raising=False)
    project = make_project(pytester, monkeypatch)
    project.write("kernels/debug_info.cc", KERNEL.read_text())
    project.write("test_kernel.py", PLUGIN_TEST)
    ini = ["orcjit_sources = kernels/debug_info.cc"]
    args = ["--orcjit-isolation=fork"]
    if where == "ini":
        ini.append("orcjit_perf_map = true")
    else:
        args.append("--orcjit-perf-map")
    project.ini(*ini, isolation=None)
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)
    pid, address, parent = map(int, (project.path / "pids.txt").read_text().split())
    assert perf_map(pid)[address][1] == "SumOfTriples(long)"
    Path(f"/tmp/perf-{parent}.map").unlink(missing_ok=True)  # the pytest process's own
