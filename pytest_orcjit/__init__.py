"""pytest-orcjit: test compiled TVM-FFI object files from pytest.

Object files are loaded with LLVM ORC JIT into isolated libraries of an
execution session; their TVM-FFI exports come back as ``tvm_ffi.Function``.

>>> from pytest_orcjit import create_session
>>> session = create_session()
>>> lib = session.create_library("lib1")
>>> lib.add("math_ops.o")
>>> lib.get_function("test_add")(1, 2)
3

The public names, all from :mod:`pytest_orcjit.api`:

* ``ExecutionSession``: an LLVM ORC JIT holding isolated libraries;
  ``load_module(objects)`` links objects into a ``tvm_ffi.Module``.
* ``Library``: one isolated library of a session (``add``, ``get_function``).
* ``create_session()``: a new, independent session.
* ``default_session()``: the process-wide session, the same object on every call.
* ``load_shared_library(name_or_path)``: makes a shared library's symbols
  (an OpenMP runtime, a BLAS, libcudart) visible to every JIT library.

They are imported on first use, so that loading the pytest plugin
(``pytest_orcjit.plugin``) does not load the native core; ``dir()`` and
``help()`` list them all the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import (
        ExecutionSession,
        Library,
        create_session,
        default_session,
        load_shared_library,
    )

__all__ = [
    "ExecutionSession",
    "Library",
    "create_session",
    "default_session",
    "load_shared_library",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'pytest_orcjit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
