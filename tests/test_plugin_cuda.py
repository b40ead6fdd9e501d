"""CUDA sources through the plugin: nvcc compiles, cached; host exports run without a GPU.

These machines have nvcc but no GPU: a ``.cu`` kernel compiles and loads in a
forked test, its host-only export returns, a runtime call raises the CUDA
error as a Python exception, ``orcjit_cuda_device`` tests are skipped with the
runtime's reason, and the pytest process never loads the CUDA runtime.
"""

from __future__ import annotations

import pytest
from plugin_helpers import Project, make_project

from pytest_orcjit import cuda

pytestmark = pytest.mark.skipif(cuda.find_nvcc() is None, reason="nvcc is not installed")

KERNEL = """\
#include <cuda_runtime.h>
#include <tvm/ffi/function.h>

__global__ void Fill(float* out, float value) { out[threadIdx.x] = value; }

int64_t Twice(int64_t x) { return 2 * x; }

int64_t DeviceCount() {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) TVM_FFI_THROW(RuntimeError) << cudaGetErrorString(status);
  return count;
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(twice, Twice);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(device_count, DeviceCount);
"""

TESTS = """\
import os
import pytest

def test_host_export(orcjit_lib):
    assert orcjit_lib.twice(21) == 42

def test_runtime_error(orcjit_lib):
    with pytest.raises(RuntimeError) as info:
        orcjit_lib.device_count()
    print("CUDA ERROR:", info.value)

def test_needs_device(orcjit_lib, orcjit_cuda_device):
    assert orcjit_lib.device_count() > orcjit_cuda_device

def test_plain_c(orcjit_session):
    assert orcjit_session is not None
"""

MAPS_ON_EXIT = """\
def pytest_unconfigure(config):
    with open("maps.txt", "w") as out, open("/proc/self/maps") as maps:
        out.write(maps.read())
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(pytester, monkeypatch)
    project.write("kernels/fill.cu", KERNEL)
    project.write("test_cuda.py", TESTS)
    project.ini("orcjit_sources = kernels/fill.cu", isolation="fork")
    return project


def test_cuda_kernel_compiles_loads_and_runs_host_code(project: Project) -> None:
    project.write("conftest.py", MAPS_ON_EXIT)
    result = project.pytester.runpytest_subprocess("-rs", "-s")
    # The host export runs, the runtime's error is a Python exception, the device test skips.
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*CUDA ERROR: *", "SKIPPED * no CUDA device (cudaGetDeviceCount*"])
    result.stdout.fnmatch_lines(["orcjit: compiled 1, reused 0 from cache*"])
    # Every test ran in a forked child: the pytest process never loaded the CUDA runtime.
    maps = (project.path / "maps.txt").read_text()
    assert "libcudart" not in maps
    assert "libcuda.so" not in maps

    warm = project.pytester.runpytest_subprocess()
    warm.assert_outcomes(passed=3, skipped=1)
    warm.stdout.fnmatch_lines(["orcjit: compiled 0, reused 1 from cache*"])


def test_architectures_are_part_of_the_cache_key(project: Project) -> None:
    project.write("test_cuda.py", "def test_objects(orcjit_objects):\n    assert orcjit_objects\n")
    project.pytester.runpytest("--orcjit-cuda-arch=75").assert_outcomes(passed=1)
    project.reset_log()
    result = project.pytester.runpytest("--orcjit-cuda-arch=75;80")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["orcjit: compiled 1, reused 0 from cache*"])


def test_compile_inline_cuda_source(project: Project) -> None:
    project.write(
        "test_cuda.py",
        "def test_inline(orcjit_compile):\n"
        f"    assert orcjit_compile({KERNEL!r}, language='cuda').suffix == '.o'\n",
    )
    project.pytester.runpytest().assert_outcomes(passed=1)


def test_missing_nvcc_errors_only_the_cuda_tests(project: Project) -> None:
    project.write("test_plain.py", "def test_plain():\n    assert True\n")
    result = project.pytester.runpytest("--orcjit-nvcc=/nonexistent/nvcc")
    result.assert_outcomes(passed=2, errors=3)
    result.stdout.fnmatch_lines(["*kernels/fill.cu failed to compile*", "*--orcjit-nvcc*"])


@pytest.mark.parametrize(
    ("option", "what"),
    [
        ("--orcjit-cuda-arch=ninety", "CUDA architecture"),
        ("--orcjit-cuda-device=-1", "CUDA device"),
    ],
)
def test_bad_cuda_options_are_usage_errors(project: Project, option: str, what: str) -> None:
    result = project.pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*invalid {what} * from {option.split('=')[0]}*"])


def test_unknown_language_names_the_languages(project: Project) -> None:
    project.write(
        "test_cuda.py",
        "import pytest\n"
        "def test_inline(orcjit_compile):\n"
        "    with pytest.raises(ValueError, match=\"unknown language 'cpp'.*'cuda'\"):\n"
        "        orcjit_compile('int f();\\n', language='cpp')\n",
    )
    project.pytester.runpytest().assert_outcomes(passed=1)
