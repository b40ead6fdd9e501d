"""Fixtures of the core and API tests: kernel objects compiled on demand.

The kernels are the C and C++ sources in ``tests/kernels``. A
:class:`KernelBuilder` compiles one into a relocatable object (or a shared
library) the first time it is asked for, once per (source, compiler, flags),
into a directory of the test session; the fixtures below are thin wrappers
over it. Run this file to compile every kernel with every compiler:
``python tests/conftest.py``.

The suite cannot do without clang++-22 and g++ (and their C twins): where one
is missing the session stops at once with an error that says how to install
it, rather than skip most tests. clang++-19 is optional: its tests skip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import tvm_ffi.libinfo

KERNELS = Path(__file__).parent / "kernels"

DEFAULT_CXX = "clang++-22"
C_COMPILER_OF = {"clang++-22": "clang-22", "clang++-19": "clang-19", "g++": "gcc"}
"""The C compiler that goes with each C++ compiler."""

TOOLCHAINS = [
    ("clang++-22", "-O0"),
    ("clang++-22", "-O2"),
    ("clang++-19", "-O3"),
    ("g++", "-O0"),
    ("g++", "-O2"),
]
"""(C++ compiler, optimization level) pairs that the toolchain-parametrized tests run with."""

REQUIRED_COMPILERS = {
    "clang++-22": "apt-get install clang-22 (.ci/run does it)",
    "clang-22": "apt-get install clang-22 (.ci/run does it)",
    "g++": "apt-get install g++",
    "gcc": "apt-get install gcc",
}
"""The compilers the suite needs, and how to install each (Debian, Ubuntu)."""
MSG_NO_COMPILER = (
    "the pytest-orcjit test suite needs the compiler {compiler}, which is not on PATH: "
    "install it ({install}), or put it on PATH"
)
PIC_FLAGS = frozenset(("-fpic", "-fPIC", "-fpie", "-fPIE", "-fno-pic", "-fno-PIC", "-fno-pie"))
"""Flags that choose the code's position independence; without one, kernels get ``-fPIC``."""

KERNEL_DIR_ENV = "ORCJIT_TEST_KERNEL_DIR"
"""If set, kernels are compiled into (and reused from) this directory instead of a tmp dir."""

EVENT_LOG_ENV = "ORCJIT_TEST_EVENT_LOG"
"""Where kernels/static_init.cc appends one line per constructor or destructor event."""


def pytest_configure(config: pytest.Config) -> None:
    """Stop the session where a compiler the suite cannot do without is missing."""
    for compiler, install in REQUIRED_COMPILERS.items():
        if shutil.which(compiler) is None:
            raise pytest.UsageError(MSG_NO_COMPILER.format(compiler=compiler, install=install))


class KernelBuilder:
    """Compiles kernels from ``tests/kernels`` into ``out_dir``, each variant once.

    ``compiler`` is a C++ compiler; for a ``.c`` source the matching C
    compiler is used. Thread-safe, so tests may ask for objects from threads.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        libinfo = tvm_ffi.libinfo
        include_dirs = {libinfo.find_include_path(), libinfo.find_dlpack_include_path()}
        self._include_flags = [f"-I{folder}" for folder in sorted(include_dirs)]
        self._built: dict[tuple[str, ...], Path] = {}
        self._lock = threading.Lock()

    def object(self, source: str, *flags: str, compiler: str = DEFAULT_CXX) -> Path:
        """Compile ``source`` (a file name in tests/kernels) into a relocatable object."""
        return self._build(source, ("-c", "-O2", *flags), compiler, ".o")

    def shared_library(self, source: str, *flags: str, compiler: str = DEFAULT_CXX) -> Path:
        """Compile and link ``source`` into a shared library (``-shared``)."""
        return self._build(source, ("-shared", "-O2", *flags), compiler, ".so")

    def read(self, source: str, *flags: str, compiler: str = DEFAULT_CXX) -> bytes:
        """The bytes of the object that :meth:`object` builds."""
        return self.object(source, *flags, compiler=compiler).read_bytes()

    def _build(self, source: str, flags: tuple[str, ...], compiler: str, suffix: str) -> Path:
        path = KERNELS / source
        if path.suffix == ".c":
            compiler = C_COMPILER_OF.get(compiler, compiler)
            language = ["-std=c11"]
        else:
            language = ["-std=c++20"]
        if shutil.which(compiler) is None:  # clang++-19: the required ones stopped the session
            pytest.skip(f"compiler {compiler} is not installed")
        key = (source, compiler, *flags)
        with self._lock:
            if key in self._built:
                return self._built[key]
            digest = hashlib.sha256("\0".join(key).encode() + path.read_bytes()).hexdigest()
            out = self.out_dir / f"{path.stem}-{compiler}-{digest[:12]}{suffix}"
            if not out.exists():  # KERNEL_DIR_ENV may point at a directory of earlier runs
                pic = [] if PIC_FLAGS.intersection(flags) else ["-fPIC"]
                command = [compiler, *flags, *pic, *language, *self._include_flags, str(path)]
                result = subprocess.run([*command, "-o", str(out)], capture_output=True, text=True)
                if result.returncode != 0:
                    raise RuntimeError(f"compiling {source} failed: {command}\n{result.stderr}")
            self._built[key] = out
            return out


@pytest.fixture(scope="session")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> KernelBuilder:
    """The session's kernel builder; objects land in a session tmp dir."""
    kept = os.environ.get(KERNEL_DIR_ENV)
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
    return KernelBuilder(Path(kept) if kept else tmp_path_factory.mktemp("kernels"))


@pytest.fixture(params=TOOLCHAINS, ids=[f"{cxx}{opt}" for cxx, opt in TOOLCHAINS])
def toolchain(request: pytest.FixtureRequest) -> tuple[str, str]:
    """A (C++ compiler, optimization flag) pair; the test runs once per pair."""
    cxx, opt = request.param
    if shutil.which(cxx) is None:
        pytest.skip(f"compiler {cxx} is not installed")
    return cxx, opt


@pytest.fixture
def session() -> Iterator[object]:
    """A fresh execution session, closed after the test."""
    from pytest_orcjit import create_session

    session = create_session()
    yield session
    session.close()


@pytest.fixture
def event_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file that static_init.cc objects loaded during the test log their events to."""
    path = tmp_path / "events.log"
    monkeypatch.setenv(EVENT_LOG_ENV, str(path))
    return path


def _compile_everything(out_dir: Path) -> None:
    builder = KernelBuilder(out_dir)
    variants = {"multi_part.cc": [("-DPART=1",), ("-DPART=2",), ("-DPART=3",)]}
    for source in sorted(path.name for path in KERNELS.iterdir()):
        if source == "aarch64.c":
            continue
        for cxx in C_COMPILER_OF:
            for opt in ("-O0", "-O3"):
                for defines in variants.get(source, [()]):
                    print(builder.object(source, opt, *defines, compiler=cxx))
    print(builder.object("aarch64.c", "--target=aarch64-linux-gnu", compiler="clang-22"))
    print(builder.shared_library("math_ops.cc"))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        _compile_everything(Path(sys.argv[1] if len(sys.argv) > 1 else tmp))
