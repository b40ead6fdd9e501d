"""Find and load the native core, ``libpytest_orcjit.so``.

The core is a plain shared library that registers its object types and global
functions with tvm-ffi when it is loaded; nothing here knows their names.
``PYTEST_ORCJIT_LIBRARY`` overrides the search (a path to the library).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
from pathlib import Path

import tvm_ffi

LIBRARY_NAME = "libpytest_orcjit.so"
LIBRARY_ENV = "PYTEST_ORCJIT_LIBRARY"


def _candidates() -> list[Path]:
    override = os.environ.get(LIBRARY_ENV)
    if override:
        return [Path(override)]
    from . import __path__ as package_path  # editable installs span two folders

    candidates = [Path(folder) / LIBRARY_NAME for folder in package_path]
    # Imported from a source checkout (python run in the repository) while the package is
    # installed: the installed distribution has the built core.
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for file in importlib.metadata.files("pytest-orcjit") or ():
            if file.name == LIBRARY_NAME:
                candidates.append(Path(str(file.locate())))
    return candidates


def load() -> tvm_ffi.Module:
    """Load the native core once; later calls return the same module."""
    global _module
    if _module is None:
        candidates = _candidates()
        for path in candidates:
            if path.is_file():
                _module = tvm_ffi.load_module(str(path), keep_module_alive=True)
                break
        else:
            searched = ", ".join(str(path) for path in candidates)
            raise ImportError(
                f"pytest-orcjit's native core {LIBRARY_NAME} was not found (searched: {searched}); "
                "reinstall the package with 'pip install .' so that it is built, "
                f"or point {LIBRARY_ENV} at a built copy"
            )
    return _module


_module: tvm_ffi.Module | None = None
