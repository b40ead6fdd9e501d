"""A kernel built through the marker, with a compile-time define (kernels_extra/scaled.cc).

The marker's sources are relative to this file's folder, and the library of a
marked test holds exactly them: none of the orcjit_sources kernels.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.orcjit(sources=["../kernels_extra/scaled.cc"], defines={"SCALE": "3"})


@pytest.mark.parametrize("shape", [(4,), (2, 5)], ids=str)
def test_scaled(orcjit_lib, rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    out = np.empty_like(x)
    orcjit_lib.scaled(x, out)
    np.testing.assert_array_equal(out, dtype(3) * x)
    assert orcjit_lib.scale_factor() == 3.0


@pytest.mark.orcjit(sources=["../kernels_extra/scaled.cc"], defines={"SCALE": "-0.5"})
def test_the_test_marker_wins_over_the_module_marker(orcjit_lib):
    assert orcjit_lib.scale_factor() == -0.5


def test_only_the_marked_sources_are_loaded(orcjit_lib):
    with pytest.raises(AttributeError, match="saxpy"):
        orcjit_lib.get_function("saxpy")
