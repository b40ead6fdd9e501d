"""Fixtures shared by the kernel tests: random data and per-dtype tolerances."""

import numpy as np
import pytest


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    """Each test that takes ``dtype`` runs once per floating-point dtype the kernels accept."""
    return request.param


@pytest.fixture
def rtol(dtype):
    """Relative tolerance against NumPy: kernels and NumPy may add in different orders."""
    return 1e-5 if dtype == np.float32 else 1e-12


@pytest.fixture
def rng():
    """A seeded generator, so that a failure reproduces."""
    return np.random.default_rng(1234)
