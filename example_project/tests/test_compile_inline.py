"""Compiling a kernel from source text inside a test, with ``orcjit_compile``.

Useful when the kernel is generated: here, a polynomial whose coefficients
come from Python is written out as C++ and evaluated with Horner's rule.
"""

import numpy as np
import pytest

COEFFICIENTS = [1.0, -2.0, 0.5, 3.0]  # 1 - 2x + 0.5x^2 + 3x^3

SOURCE = """
#include <tvm/ffi/function.h>

static double Poly(double x) {{
  const double c[] = {{{coefficients}}};
  double y = 0.0;
  for (int i = {degree}; i >= 0; --i) y = y * x + c[i];
  return y;
}}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(poly, Poly);
"""


def test_generated_polynomial(orcjit_compile, orcjit_session):
    text = SOURCE.format(
        coefficients=", ".join(map(repr, COEFFICIENTS)), degree=len(COEFFICIENTS) - 1
    )
    path = orcjit_compile(text)
    lib = orcjit_session.create_library()
    lib.add(path)
    poly = lib.get_function("poly")
    for x in [-2.0, 0.0, 0.5, 3.0]:
        assert poly(x) == pytest.approx(np.polynomial.polynomial.polyval(x, COEFFICIENTS))
    lib.close()
