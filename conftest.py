"""Run the examples of README.md, CONTRIBUTING.md and docs/*.md with Sybil.

    pytest -q -p no:randomly README.md CONTRIBUTING.md docs

Each document runs in a temporary directory of its own, its examples in order:

* a ``python`` block runs in the document's namespace, in that directory; one whose first line
  names a test file (``# tests/test_saxpy.py``) is written there and run with ``pytest`` in a
  subprocess instead, which must pass;
* a ``c``, ``cpp``, ``cuda`` or ``toml`` block whose first line names a file
  (``// kernels/saxpy.cc``, ``/* kernels/counter.c */``, ``# pyproject.toml``) is written there
  before the document's first example runs (a test file may use a source shown after it); other
  blocks of these languages are source shown for reading;
* an ``sh`` block runs with ``sh -e`` there;
* ``<!-- skip: next -->`` before a block skips it (installs, GPU-only examples, long runs).

The objects the Python API examples load by name (``math_ops.o``...) are compiled from
``tests/kernels`` into the document's directory before its first example runs. Sybil is imported
only when a document is collected, so ``pytest tests`` runs without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent
DOCUMENTS = ("README.md", "CONTRIBUTING.md", "docs/*.md")
CXX = os.environ.get("CXX") or ("clang++-22" if shutil.which("clang++-22") else "g++")

# Objects the examples load by name: the tests/kernels source each is compiled from, with which
# compiler and flags (the OpenMP example names libgomp, so its object is gcc's).
OBJECTS = {
    "math_ops.o": ("math_ops.cc", CXX, []),
    "string_ops.o": ("string_ops.cc", CXX, []),
    "implementation_v2.o": ("implementation_v2.cc", CXX, []),
    "ffi_extension.o": ("ffi_extension.cc", CXX, []),
    "openmp_sum.o": ("openmp_sum.cc", "g++", ["-fopenmp"]),
}

# The first line of a block that names the file it is: `// path`, `/* path */` or `# path`.
SOURCE_BLOCK = re.compile(r"^```(?:c|cpp|cuda|toml)\n(.*?)^```$", re.M | re.S)
FILE_COMMENT = re.compile(r"^(?://|/\*|#)\s*([\w./-]+\.(?:cc|c|cu|h|py|toml))\s*(?:\*/)?\s*$")


def named_file(source: str) -> str | None:
    """The file a block's first line names, or None."""
    match = FILE_COMMENT.match(source.split("\n", 1)[0])
    return match.group(1) if match else None


def write_file(source: str) -> Path:
    path = Path.cwd() / str(named_file(source))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def run_python(example: Any) -> None:
    """A python block: a test file runs under pytest, anything else in the namespace."""
    from sybil.evaluators.python import PythonEvaluator

    source = str(example.parsed)
    name = named_file(source)
    if name is None or not Path(name).name.startswith("test_"):
        PythonEvaluator()(example)
        return
    write_file(source)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", name]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")


def run_sh(example: Any) -> None:
    done = subprocess.run(
        ["sh", "-e"], input=str(example.parsed), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"sh block failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def source_files(document: str) -> Iterator[str]:
    """The source of every c, cpp, cuda or toml block of a document that names its file."""
    for match in SOURCE_BLOCK.finditer(document):
        if named_file(match.group(1)):
            yield match.group(1)


class SybilMissing(pytest.File):
    """A document collected where Sybil is not installed: an error once it is selected."""

    def collect(self) -> Iterator[pytest.Item]:
        raise ImportError(
            f"running the examples of {self.path.name} needs Sybil: pip install -e '.[test]'"
        )


_collect: Any = None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    # pytest offers every file of a directory it walks, also where only tests/ was asked for, so
    # that Sybil is imported only for documents, and its absence is an error only for those run.
    if not any(file_path.match(str(ROOT / pattern)) for pattern in DOCUMENTS):
        return None
    global _collect
    if _collect is None:
        try:
            from sybil import Sybil
            from sybil.parsers.markdown import CodeBlockParser, SkipParser
        except ImportError:
            return SybilMissing.from_parent(parent, path=file_path)
        parsers = [
            SkipParser(),
            CodeBlockParser("python", run_python),
            CodeBlockParser("sh", run_sh),
        ]
        sybil = Sybil(parsers, patterns=list(DOCUMENTS), path=str(ROOT), fixtures=["doc_dir"])
        _collect = sybil.pytest()
    result: pytest.Collector | None = _collect(file_path, parent)
    return result


@pytest.fixture(scope="module")
def doc_dir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The document's own directory, with the objects it names compiled; the examples' cwd."""
    document = Path(request.path)
    directory = tmp_path_factory.mktemp(document.stem)
    text = document.read_text()
    include = subprocess.run(
        [sys.executable, "-m", "tvm_ffi.config", "--cxxflags"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name, (source, compiler, flags) in OBJECTS.items():
        if re.search(rf"\b{re.escape(name)}\b", text):
            command = [
                compiler,
                *include,
                "-std=c++20",
                "-fPIC",
                "-O2",
                *flags,
                "-c",
                str(ROOT / "tests" / "kernels" / source),
                "-o",
                str(directory / name),
            ]
            subprocess.run(command, check=True)
    previous = Path.cwd()
    os.chdir(directory)
    for source in source_files(text):
        write_file(source)
    try:
        yield directory
    finally:
        os.chdir(previous)
