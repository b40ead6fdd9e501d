"""tensor_sum and softmax (kernels/reduce.cc) against NumPy."""

import numpy as np
import pytest


def numpy_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("shape", [(1,), (100,), (8, 9), (2, 3, 4)], ids=str)
def test_sum(orcjit_lib, rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    # The kernel adds in double precision, so compare with NumPy's float64 sum.
    assert orcjit_lib.tensor_sum(x) == pytest.approx(x.astype(np.float64).sum(), rel=1e-12)


def test_sum_of_nothing_is_zero(orcjit_lib):
    assert orcjit_lib.tensor_sum(np.empty((0,), np.float32)) == 0.0


@pytest.mark.parametrize("shape", [(1,), (10,), (4, 16), (2, 3, 7)], ids=str)
def test_softmax(orcjit_lib, rng, dtype, rtol, shape):
    x = rng.standard_normal(shape).astype(dtype)
    out = np.empty_like(x)
    orcjit_lib.softmax(x, out)
    np.testing.assert_allclose(out, numpy_softmax(x), rtol=rtol)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=rtol * 10)


def test_softmax_is_stable_for_large_inputs(orcjit_lib, dtype, rtol):
    # Without subtracting the maximum, exp(1000) overflows and every entry is nan.
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1000.0, -1000.0]], dtype)
    out = np.empty_like(x)
    orcjit_lib.softmax(x, out)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, numpy_softmax(x.astype(np.float64)), rtol=rtol)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.ones((2, 0)), ValueError, "empty last axis"),
        (np.array(1.0), ValueError, "at least one axis"),
        (np.ones(3, np.int64), TypeError, "'x' must be float32 or float64, got int64"),
    ],
    ids=["empty-axis", "0-d", "int64"],
)
def test_softmax_rejects(orcjit_lib, x, error, match):
    with pytest.raises(error, match=match):
        orcjit_lib.softmax(x, np.empty_like(x))
