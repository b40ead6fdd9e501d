"""The plain C kernels (kernels/dot.c), written against the safe-call ABI."""

import numpy as np
import pytest


@pytest.mark.parametrize("n", [0, 1, 5, 1000])
def test_dot(orcjit_lib, rng, n):
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    assert orcjit_lib.c_dot(x, y) == pytest.approx(float(x @ y), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.ones(3), np.ones(4)), ValueError, "same length, got 3 and 4"),
        ((np.ones(3, np.float32), np.ones(3)), TypeError, "'x' must be float64"),
        ((np.ones(3), np.ones((3, 1))), ValueError, "'y' must be 1-D, got ndim=2"),
        ((np.ones(6)[::2], np.ones(3)), ValueError, "'x' must be contiguous, got stride 2"),
        ((1.0, np.ones(3)), TypeError, "'x' must be a tensor"),
        ((np.ones(3),), TypeError, r"c_dot\(x, y\) takes 2 arguments, got 1"),
    ],
    ids=["length", "dtype", "ndim", "strided", "not-a-tensor", "arity"],
)
def test_dot_rejects(orcjit_lib, args, error, match):
    with pytest.raises(error, match=match):
        orcjit_lib.c_dot(*args)


@pytest.mark.parametrize("run", range(3))
def test_static_state_starts_fresh_in_every_test(orcjit_lib, run):
    # Each test gets a new library, so the static counter in dot.c starts at zero each time.
    assert [orcjit_lib.c_calls() for _ in range(3)] == [1, 2, 3]
