"""Shared libraries for kernels: load_shared_library, and the hints of undefined runtime symbols.

Loading a shared library cannot be undone, so the tests that need a runtime
that is not loaded yet (OpenMP) run in a fresh Python process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_orcjit import ExecutionSession, load_shared_library

OPENMP = [("clang++-22", "omp", "__kmpc_", "the LLVM OpenMP runtime, libomp"),
          ("g++", "gomp", "GOMP_parallel", "the GNU OpenMP runtime, libgomp")]  # fmt: skip
"""(compiler, its OpenMP runtime, an undefined symbol of its kernels, what the hint calls it)."""

LINK_BEFORE_AND_AFTER_LOADING = """
import json, sys
from pytest_orcjit import create_session, load_shared_library

obj, runtime = sys.argv[1:]
session = create_session()  # made before the load: its earlier miss must not hide the runtime
try:
    session.load_module(obj)
    before = "linked"
except RuntimeError as err:
    before = str(err)
path = load_shared_library(runtime)
module = session.load_module(obj)
print(json.dumps({"before": before, "path": path, "sum": module.openmp_sum(1000),
                  "threads": module.openmp_threads(), "max": module.openmp_max_threads()}))
"""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python process (same environment)."""
    command = [sys.executable, "-c", textwrap.dedent(code), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("cxx", "runtime", "symbol", "described"), OPENMP, ids=["clang", "gcc"])
def test_openmp_kernel_links_after_its_runtime_is_loaded(
    kernels, cxx: str, runtime: str, symbol: str, described: str
) -> None:
    obj = kernels.object("openmp_sum.cc", "-fopenmp", compiler=cxx)
    result = run_python(LINK_BEFORE_AND_AFTER_LOADING, str(obj), runtime)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.splitlines()[-1])
    # Before: the link fails, saying which runtime defines the symbols and how to load it.
    assert re.search(rf"undefined symbols? ('\w+', )*'{symbol}.*\({described}\)", out["before"])
    assert f"--orcjit-libs {runtime}" in out["before"]
    assert f'load_shared_library("{runtime}")' in out["before"]
    assert "-fopenmp" in out["before"]
    # After: the same session links it, and the loop ran on two threads.
    assert os.path.isabs(out["path"]) and Path(out["path"]).is_file()
    assert Path(out["path"]).name.startswith(f"lib{runtime}.so")
    assert out["sum"] == 999 * 1000 // 2
    assert out["threads"] == 2
    assert out["max"] >= 1


def test_a_bare_name_is_found_as_the_compiler_would() -> None:
    # libm.so is a linker script (GROUP ( libm.so.6 ... )): the library it names is loaded.
    path = load_shared_library("m")
    assert Path(path).is_file() and Path(path).name.startswith("libm.so.")
    assert load_shared_library("libm.so.6") == path
    assert load_shared_library(path) == path


def test_a_path_is_used_as_is(kernels) -> None:
    library = kernels.shared_library("math_ops.cc")
    assert load_shared_library(library) == str(library)


def test_an_unknown_name_says_where_it_looked() -> None:
    with pytest.raises(ValueError) as raised:
        load_shared_library("orcjit_no_such_library")
    message = str(raised.value)
    assert "'orcjit_no_such_library'" in message
    assert "-print-file-name=liborcjit_no_such_library.so" in message
    assert "ldconfig" in message and "LD_LIBRARY_PATH" in message
    assert "install it, or pass the path of the .so file" in message


def test_a_path_that_is_no_shared_library_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "libmissing.so"
    with pytest.raises(ValueError, match=f"'{missing}' does not exist"):
        load_shared_library(missing)
    text = tmp_path / "libtext.so"
    text.write_text("not a library\n")
    with pytest.raises(ValueError, match=f"cannot load the shared library '{text}'"):
        load_shared_library(text)
    with pytest.raises(TypeError, match=r"a library name .* or a path, not int"):
        load_shared_library(42)  # type: ignore[arg-type]


def test_undefined_runtime_symbols_name_their_library(session: ExecutionSession, kernels) -> None:
    obj = kernels.object("runtime_symbols.c")
    with pytest.raises(RuntimeError) as raised:
        session.load_module(obj)
    message = str(raised.value)
    # One clause per library, its symbols sorted.
    assert (
        f"undefined symbol 'cudaGetDeviceCount', referenced by {obj} "
        "(the CUDA runtime, libcudart)" in message
    )
    assert (
        f"undefined symbols 'cblas_ddot', 'sgemm_', referenced by {obj} "
        "(a BLAS library, e.g. libopenblas)" in message
    )
    assert "--orcjit-libs openblas" in message and "--orcjit-libs cudart" in message
    assert "no object in the library defines it" not in message  # every symbol has its hint
