"""saxpy, add and relu (kernels/elementwise.cc) against NumPy."""

import numpy as np
import pytest

SHAPES = [(1,), (7,), (3, 4), (2, 3, 5), (0,)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_saxpy(orcjit_lib, rng, dtype, rtol, shape):
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    out = np.empty_like(x)
    orcjit_lib.saxpy(2.5, x, y, out)
    np.testing.assert_allclose(out, dtype(2.5) * x + y, rtol=rtol)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_add(orcjit_lib, rng, dtype, rtol, shape):
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    out = np.empty_like(x)
    # Library.add (add an object file) shadows an export named add: ask for it by name.
    orcjit_lib.get_function("add")(x, y, out)
    np.testing.assert_allclose(out, x + y, rtol=rtol)


def test_relu_in_place(orcjit_lib, rng, dtype):
    x = rng.standard_normal((4, 6)).astype(dtype)
    expected = np.maximum(x, 0)
    orcjit_lib.relu(x, x)  # out may be the input
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize(
    ("y", "error", "match"),
    [
        (
            np.ones((3, 2), np.float32),
            ValueError,
            r"'y' must have the shape of 'x' \(2, 3\), got \(3, 2\)",
        ),
        (
            np.ones((2, 3), np.float64),
            TypeError,
            r"'y' must have the dtype of 'x' \(float32\), got float64",
        ),
        (np.ones((2, 3), np.int32), TypeError, r"'y' must be float32 or float64, got int32"),
        (np.ones((2, 6), np.float32)[:, ::2], ValueError, r"'y' must be contiguous"),
    ],
    ids=["shape", "dtype", "int32", "strided"],
)
def test_saxpy_rejects_bad_y(orcjit_lib, y, error, match):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(error, match=match):
        orcjit_lib.saxpy(1.0, x, y, np.empty_like(x))


def test_non_tensor_argument_is_a_type_error(orcjit_lib):
    # tvm-ffi converts arguments before the kernel runs and names the one it could not convert.
    with pytest.raises(TypeError, match=r"Mismatched type on argument #1 when calling: `add"):
        orcjit_lib.get_function("add")(np.ones(2), [1.0, 2.0], np.ones(2))
