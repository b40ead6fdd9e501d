"""The CUDA kernels (kernels_cuda/vector.cu): host exports anywhere, GPU kernels where a GPU is.

The marker gives these tests a library of the CUDA source alone, compiled by
nvcc. Tensors reach the GPU through torch, else CuPy (what a kernel author
already has); a test that launches a kernel asks for ``orcjit_cuda_device``
and is skipped, with the runtime's reason, on a machine without a GPU.
"""

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.orcjit(sources=["../kernels_cuda/vector.cu"])


def to_device(array, device):
    """``array`` copied to GPU ``device`` as a torch tensor, else a CuPy array."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        return torch.as_tensor(array, device=f"cuda:{device}")
    if importlib.util.find_spec("cupy") is not None:
        import cupy

        with cupy.cuda.Device(device):
            return cupy.asarray(array)
    pytest.skip("needs torch or CuPy to put tensors on the GPU")


def to_host(tensor):
    """A NumPy copy of a torch tensor or CuPy array, after the GPU finished writing it."""
    if hasattr(tensor, "cpu"):
        return tensor.cpu().numpy()
    return tensor.get()


def test_runtime_version(orcjit_lib):
    # A runtime call that needs no GPU: the major version of the CUDA runtime (12, 13, ...).
    assert orcjit_lib.runtime_version() // 1000 >= 12


def test_device_count(orcjit_lib):
    # Where there is no GPU, the runtime's error arrives as a Python exception.
    try:
        count = orcjit_lib.device_count()
    except RuntimeError as err:
        assert "cudaGetDeviceCount failed" in str(err)
    else:
        assert count >= 1


@pytest.mark.parametrize("n", [1, 1000, 1 << 20])
def test_add(orcjit_lib, orcjit_cuda_device, rng, n):
    x, y = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
    dx, dy = to_device(x, orcjit_cuda_device), to_device(y, orcjit_cuda_device)
    out = to_device(np.empty_like(x), orcjit_cuda_device)
    orcjit_lib.vector_add(dx, dy, out)
    np.testing.assert_array_equal(to_host(out), x + y)


@pytest.mark.parametrize("n", [1, 1000, 1 << 20])
def test_sum(orcjit_lib, orcjit_cuda_device, rng, n):
    x = rng.standard_normal(n, np.float32)
    out = to_device(np.zeros(1, np.float32), orcjit_cuda_device)
    orcjit_lib.vector_sum(to_device(x, orcjit_cuda_device), out)
    assert to_host(out)[0] == pytest.approx(float(x.sum(dtype=np.float64)), rel=1e-4, abs=1e-3)


def test_add_rejects_host_arrays(orcjit_lib):
    x = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="x must be on a CUDA device"):
        orcjit_lib.vector_add(x, x, x)
