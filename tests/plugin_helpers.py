"""Helpers of the plugin tests: a pytester project with a compiler that counts its runs.

``Project`` writes wrapper compilers (``cxx``, ``cc``) that append their
arguments to ``compiler.log`` and exec the real compiler, and a ``pytest.ini``
naming them, so a test can ask exactly which compiles a run started.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

REAL_CXX = "clang++-22" if shutil.which("clang++-22") else "g++"
REAL_CC = "clang-22" if shutil.which("clang-22") else "gcc"

C_ADD = "int add(int a, int b) { return a + b; }\n"
"""A C source that compiles in milliseconds (no tvm-ffi headers)."""

TVM_ADD = """\
#include <tvm/ffi/function.h>
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_add, [](int64_t a, int64_t b) { return a + b; });
"""
"""A TVM-FFI export written with a lambda: needs -std=c++20."""


def core_available() -> bool:
    """True once the native core is built (the JIT tests need it)."""
    try:
        from pytest_orcjit import api

        api.llvm_version()
    except Exception:
        return False
    return True


class Project:
    """A pytester project whose compilers log every run to ``compiler.log``."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path
        self.log = self.path / "compiler.log"
        self.cxx = self.wrapper("cxx", REAL_CXX)
        self.cc = self.wrapper("cc", REAL_CC)

    def wrapper(self, name: str, real: str, *, status: int | None = None) -> Path:
        """A compiler script logging its arguments; with ``status``, it just exits so."""
        path = self.path / "bin" / name
        path.parent.mkdir(exist_ok=True)
        tail = f"exit {status}" if status is not None else f'exec {real} "$@"'
        path.write_text(f'#!/bin/sh\necho "$@" >> "{self.log}"\n{tail}\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path

    def ini(self, *lines: str, compilers: bool = True, isolation: str | None = "none") -> None:
        """Write pytest.ini: the wrapper compilers, ``isolation`` and extra lines."""
        body = ["[pytest]"]
        if compilers:
            body += [f"orcjit_cxx = {self.cxx}", f"orcjit_cc = {self.cc}"]
        if isolation:
            body.append(f"orcjit_isolation = {isolation}")
        (self.path / "pytest.ini").write_text("\n".join([*body, *lines]) + "\n")

    def write(self, relpath: str, text: str) -> Path:
        path = self.path / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def compiles(self) -> list[str]:
        """The source file of every compile run since the last ``reset_log``."""
        return sorted(line.split(" -c ")[1].split()[0] for line in self.compile_runs())

    def compile_runs(self) -> list[str]:
        """The arguments of every compile run since the last ``reset_log``.

        A compiler's ``-###`` probe (which compiler it runs) is no compile.
        """
        return [line for line in self._lines() if " -c " in line and "-###" not in line]

    def runs(self) -> list[str]:
        """Every compiler run (compiles and ``--version`` probes) since ``reset_log``."""
        return self._lines()

    def reset_log(self) -> None:
        self.log.unlink(missing_ok=True)

    def _lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def rel(self, path: str) -> str:
        return str((self.path / path).resolve())


def make_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A Project with $CXX and $CC unset (each test module wraps this in a fixture)."""
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    return Project(pytester)
