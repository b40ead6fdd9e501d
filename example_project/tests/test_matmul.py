"""The blocked matmul (kernels/matmul.cc) against NumPy's ``@``."""

import numpy as np
import pytest

# (M, K, N): single elements, shapes smaller than one 32 x 32 block, exact
# multiples of it and ragged edges where the last block is partial.
SHAPES = [(1, 1, 1), (3, 5, 2), (32, 32, 32), (33, 65, 17), (64, 1, 40)]


@pytest.mark.parametrize(("m", "k", "n"), SHAPES, ids=lambda v: str(v))
def test_matmul(orcjit_lib, rng, dtype, m, k, n):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    out = np.full((m, n), np.nan, dtype)  # the kernel must overwrite every entry
    orcjit_lib.matmul(a, b, out)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out, a @ b, rtol=rtol, atol=rtol)


@pytest.mark.parametrize(
    ("a", "b", "out", "error", "match"),
    [
        (
            np.ones((2, 3)),
            np.ones((4, 2)),
            np.ones((2, 2)),
            ValueError,
            r"inner dimensions differ: 'a' is \(2, 3\) and 'b' is \(4, 2\)",
        ),
        (
            np.ones((2, 3)),
            np.ones((3, 4)),
            np.ones((4, 2)),
            ValueError,
            r"'out' must have shape \(2, 4\), got \(4, 2\)",
        ),
        (
            np.ones(3),
            np.ones((3, 4)),
            np.ones((1, 4)),
            ValueError,
            r"'a' must be 2-D, got a tensor with ndim=1",
        ),
        (
            np.ones((2, 3), np.float32),
            np.ones((3, 4)),
            np.ones((2, 4)),
            TypeError,
            r"must share one dtype, got float32, float64 and float64",
        ),
        (
            np.ones((2, 3)),
            np.ones((3, 4)).T,
            np.ones((2, 4)),
            ValueError,
            r"'b' must be contiguous",
        ),
    ],
    ids=["inner", "out-shape", "ndim", "dtype", "transposed"],
)
def test_matmul_rejects(orcjit_lib, a, b, out, error, match):
    with pytest.raises(error, match=match):
        orcjit_lib.matmul(a, b, out)


def test_matmul_rejects_aliased_output(orcjit_lib):
    a = np.ones((3, 3))
    with pytest.raises(ValueError, match="'out' must not be 'a' or 'b'"):
        orcjit_lib.matmul(a, a, a)
