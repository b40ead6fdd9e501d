"""pytest-orcjit: test compiled TVM-FFI object files from pytest.

Object files are loaded with LLVM ORC JIT into isolated libraries of an
execution session; their TVM-FFI exports come back as ``tvm_ffi.Function``.

>>> from pytest_orcjit import create_session
>>> session = create_session()
>>> lib = session.create_library("lib1")
>>> lib.add("math_ops.o")
>>> lib.get_function("test_add")(1, 2)
3

The names below are imported on first use, so that loading the pytest plugin
(``pytest_orcjit.plugin``) does not load the native core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import ExecutionSession, Library, create_session, default_session

__all__ = ["ExecutionSession", "Library", "create_session", "default_session"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'pytest_orcjit' has no attribute {name!r}")
