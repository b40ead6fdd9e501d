"""The native core's global functions (``orcjit.*``), bound into this module."""

import tvm_ffi

from . import _native

_native.load()
tvm_ffi.init_ffi_api("orcjit", __name__)
tvm_ffi.register_error("FileNotFoundError", FileNotFoundError)
