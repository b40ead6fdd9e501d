"""load_module expands the import tree a library carries in ``__tvm_ffi__library_bin``, as
``tvm_ffi.load_module`` does for a shared library, and refuses a malformed one."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import tvm_ffi
import tvm_ffi.libinfo

from pytest_orcjit import ExecutionSession

KIND = "orcjit_testkind"
"""The module kind the tests register a loader for: its bytes are an object file, loaded by JIT."""

# A kernel that carries a blob, and calls a function of an imported module by name, as TVM's host
# code calls its device kernels.
SOURCE = """\
#include <stddef.h>
#include <tvm/ffi/c_api.h>
#include <tvm/ffi/extra/c_env_api.h>

TVM_FFI_DLL_EXPORT void* __tvm_ffi__library_ctx = NULL;
TVM_FFI_DLL_EXPORT const unsigned char __tvm_ffi__library_bin[] = {%s};

/* call_imported(a, b): test_add(a, b) of the modules the library imports. */
TVM_FFI_DLL_EXPORT int __tvm_ffi_call_imported(void* self, const TVMFFIAny* args, int32_t num_args,
                                               TVMFFIAny* result) {
  TVMFFIObjectHandle add = NULL;
  if (num_args != 2) return -1;
  if (TVMFFIEnvModLookupFromImports(__tvm_ffi__library_ctx, "test_add", &add) != 0) return -1;
  TVMFFIAny add_args[2] = {args[0], args[1]};
  return TVMFFIFunctionCall(add, add_args, 2, result);
}
"""


def u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def vector(values: list[int]) -> bytes:
    return u64(len(values)) + b"".join(u64(value) for value in values)


def string(data: bytes) -> bytes:
    return u64(len(data)) + data


def library_bin(modules: list[tuple[str, bytes]], indptr: list[int], children: list[int]) -> bytes:
    """A blob as TVM writes it: the length, the import tree (by rows), then each module."""
    stream = vector(indptr) + vector(children)
    for kind, payload in modules:
        stream += string(kind.encode())
        if kind != "_lib":
            stream += string(payload)
    return u64(len(stream)) + stream


def compile_blob(tmp_path: Path, blob: bytes, *flags: str, suffix: str = ".o") -> Path:
    """Compiles SOURCE holding ``blob`` into an object (or, with -shared, a shared library)."""
    source = tmp_path / "library_bin.c"
    source.write_text(SOURCE % ", ".join(str(byte) for byte in blob))
    includes = {tvm_ffi.libinfo.find_include_path(), tvm_ffi.libinfo.find_dlpack_include_path()}
    out = tmp_path / f"library_bin{suffix}"
    compiler = next((cc for cc in ("clang-22", "gcc") if shutil.which(cc)), None)
    if compiler is None:
        pytest.skip("no C compiler (clang-22 or gcc) is installed")
    command = [compiler, "-std=c11", "-O2", "-fPIC", *flags, *(f"-I{path}" for path in includes)]
    subprocess.run([*command, str(source), "-o", str(out)], check=True)
    return out


@pytest.fixture
def loader(session: ExecutionSession) -> Iterator[list[bytes]]:
    """Registers the loader of KIND: it JIT-loads its bytes; yields the bytes it was given."""
    given: list[bytes] = []

    def load(data: bytes) -> tvm_ffi.Module:
        given.append(bytes(data))
        return session.load_module(bytes(data), name="imported")

    tvm_ffi.register_global_func(f"ffi.Module.load_from_bytes.{KIND}", load, override=True)
    yield given
    tvm_ffi.registry.remove_global_func(f"ffi.Module.load_from_bytes.{KIND}")


def describe(module: tvm_ffi.Module) -> list[object]:
    """What a module looks like from Python: its kind (the library itself is "library" in
    tvm-ffi, "orcjit" here), its functions, and the same of its imports, depth first."""
    kind = (
        "library"
        if module.kind == "orcjit" and module.implements_function("call_imported")
        else module.kind
    )
    own = [name for name in ("call_imported", "test_add") if module.implements_function(name)]
    return [kind, own, [describe(imported) for imported in module.imports]]


def test_imports_are_wired_and_found_from_jit_code(
    session: ExecutionSession, kernels, tmp_path: Path, loader: list[bytes]
) -> None:
    payload = kernels.read("math_ops.cc")
    blob = library_bin([("_lib", b""), (KIND, payload)], indptr=[0, 1, 1], children=[1])
    module = session.load_module(compile_blob(tmp_path, blob, "-c"), name="host")
    assert loader == [payload], "the loader got the module's bytes"
    assert module.kind == "orcjit"
    assert [imported.kind for imported in module.imports] == ["orcjit"]
    assert module.imports[0].test_add(1, 2) == 3
    # JIT code finds a function of the imported module through the library's context.
    assert module.call_imported(20, 22) == 42
    assert module.get_function("test_add", query_imports=True)(2, 3) == 5


@pytest.mark.parametrize(
    ("modules", "indptr", "children"),
    [
        pytest.param([("_lib", b""), (KIND, None)], [0, 1, 1], [1], id="library-imports-module"),
        pytest.param([(KIND, None), ("_lib", b"")], [0, 1, 1], [1], id="module-imports-library"),
        pytest.param([("_lib", b""), (KIND, None), (KIND, None)], [0, 2, 2, 2], [1, 2], id="two"),
        pytest.param([("_lib", b"")], [0, 0], [], id="library-alone"),
    ],
)
def test_same_modules_as_tvm_ffi_load_module(
    session: ExecutionSession, kernels, tmp_path: Path, loader, modules, indptr, children
) -> None:
    payload = kernels.read("math_ops.cc")
    modules = [(kind, payload if data is None else data) for kind, data in modules]
    blob = library_bin(modules, indptr, children)
    jit = session.load_module(compile_blob(tmp_path, blob, "-c"))
    shared = tvm_ffi.load_module(compile_blob(tmp_path, blob, "-shared", suffix=".so"), False)
    assert describe(jit) == describe(shared)

    def call(module: tvm_ffi.Module) -> object:
        lib = module if module.implements_function("call_imported") else module.imports[-1]
        try:
            return lib.call_imported(20, 22)
        except Exception as err:  # both must fail alike
            return type(err), str(err).splitlines()[0]

    assert call(jit) == call(shared)


def test_a_blob_in_bytes_is_read_too(
    session: ExecutionSession, kernels, tmp_path: Path, loader
) -> None:
    blob = library_bin([("_lib", b""), (KIND, kernels.read("math_ops.cc"))], [0, 1, 1], [1])
    module = session.load_module(compile_blob(tmp_path, blob, "-c").read_bytes())
    assert module.call_imported(1, 2) == 3


def test_a_library_without_a_blob_has_no_imports(session: ExecutionSession, kernels) -> None:
    module = session.load_module(kernels.object("math_ops.cc"))
    assert list(module.imports) == []


TREE = vector([0, 0]) + vector([])
"""The import tree of one module importing nothing."""


def raw(stream: bytes) -> bytes:
    """A blob of ``stream``, with its length."""
    return u64(len(stream)) + stream


MALFORMED = [
    pytest.param(
        b"\x01\x02",
        r"truncated: its length header needs 8 bytes at offset 0, and only "
        r"2 bytes of its 2 are left",
        id="shorter-than-its-header",
    ),
    pytest.param(
        u64(100) + bytes(10),
        r"truncated: its length header says 100 bytes follow, and "
        r"the object defines 10",
        id="header-past-the-end",
    ),
    pytest.param(
        b"\xff" * 64, r"truncated: its length header says 18446744073709551615 bytes", id="garbage"
    ),
    pytest.param(
        raw(u64(2**60)),
        r"truncated: the import tree's row pointers needs "
        r"1152921504606846976 integers at offset 8, and only 0 bytes",
        id="huge-count",
    ),
    pytest.param(
        library_bin([], [0], []), r"its import tree has no module \(1 row pointers", id="no-module"
    ),
    pytest.param(
        library_bin([("_lib", b"")], [1, 1], []),
        r"bad import tree: its first row pointer is 1, not 0",
        id="first-row-pointer",
    ),
    pytest.param(
        library_bin([("_lib", b"")] * 2, [0, 2, 1], [0, 0]),
        r"bad import tree: row pointer 2 \(1\) is less than the one before it \(2\)",
        id="decreasing",
    ),
    pytest.param(
        library_bin([("_lib", b"")], [0, 5], []),
        r"bad import tree: its row pointers reach 5, past its 0 import indices",
        id="rows-past-indices",
    ),
    pytest.param(
        library_bin([("_lib", b"")], [0, 1], [9]),
        r"bad import index: module 0 imports module 9, and there are 1 modules",
        id="import-index",
    ),
    pytest.param(
        library_bin([("_lib", b"")], [0, 1], [0]),
        r"bad import tree: module 0 imports module 0, which imports it \(an import cycle\)",
        id="self",
    ),
    pytest.param(
        library_bin([("_lib", b"")] * 2, [0, 1, 2], [1, 0]),
        r"bad import tree: module 1 imports module 0, which imports it \(an import cycle\)",
        id="cycle",
    ),
    pytest.param(
        raw(TREE + u64(50) + b"_li"),
        r"truncated: the kind of module 0 needs 50 bytes at offset 40, and only 3",
        id="kind",
    ),
    pytest.param(
        raw(TREE + string(b"abc") + u64(9)),
        r"truncated: the bytes of module 0 \('abc'\) needs 9 bytes",
        id="module-bytes",
    ),
    pytest.param(
        library_bin([("_lib", b""), ("nosuchkind", b"x")], [0, 1, 1], [1]),
        r"holds a module of unknown kind 'nosuchkind' \(module 1\): no global function "
        r"'ffi.Module.load_from_bytes.nosuchkind' is registered",
        id="unknown-kind",
    ),
]


@pytest.mark.parametrize(("blob", "message"), MALFORMED)
def test_malformed_blobs_raise(
    session: ExecutionSession, tmp_path: Path, blob: bytes, message: str
) -> None:
    path = compile_blob(tmp_path, blob, "-c")
    where = rf"library 'host': the __tvm_ffi__library_bin of '{path}'"
    with pytest.raises(ValueError, match=rf"{where}( is malformed: | ){message}"):
        session.load_module(path, name="host")


def test_a_loader_must_return_a_module(session: ExecutionSession, tmp_path: Path) -> None:
    name = "ffi.Module.load_from_bytes.orcjit_notamodule"
    tvm_ffi.register_global_func(name, lambda data: len(data), override=True)
    try:
        blob = library_bin([("_lib", b""), ("orcjit_notamodule", b"abc")], [0, 1, 1], [1])
        with pytest.raises(ValueError, match=rf"'{name}' returned int for module 1, not a module"):
            session.load_module(compile_blob(tmp_path, blob, "-c"), name="host")
    finally:
        tvm_ffi.registry.remove_global_func(name)
