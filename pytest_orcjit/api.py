"""The Python API: execution sessions and the libraries they hold.

A session owns one LLVM ORC JIT. A library is one isolated symbol namespace
(a JITDylib) inside it: objects added to a library resolve their symbols in
that library first and then against the process (libtvm_ffi, libstdc++,
libc). Two libraries may define the same symbol; each sees its own.

Two shapes of the same engine are offered:

* the seed flow: ``create_session()``, ``session.create_library(name)``,
  ``lib.add(path_or_bytes)`` (incremental), ``lib.get_function(name)``;
* the shape of apache-tvm-ffi-orcjit: ``ExecutionSession()``,
  ``default_session()`` and ``session.load_module(objects)``, which returns a
  plain ``tvm_ffi.Module``.

Kernels that call a shared library the process has not loaded (an OpenMP
runtime, a BLAS, libcudart) link once :func:`load_shared_library` loaded it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Union

import tvm_ffi
from tvm_ffi import Object, register_object

from . import _ffi_api, shared_libraries

ObjectSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]
"""An object file: a path, or the bytes of one."""
_PATH_TYPES = (str, os.PathLike)
_BYTES_TYPES = (bytes, bytearray, memoryview)

MSG_OBJECT_TYPE = (
    "an object file is given as a path (str or os.PathLike) or object-file bytes "
    "(bytes, bytearray, memoryview), not {type}"
)
MSG_NO_OBJECTS = (
    "load_module() got an empty list of objects; pass a path, the bytes of an object, "
    "or a list of at least one (did a glob match nothing?)"
)


@register_object("orcjit.ExecutionSession")
class ExecutionSession(Object):
    """An LLVM ORC JIT that holds isolated libraries.

    Closing the session (``close()``, leaving a ``with`` block, or dropping
    the last reference) closes every library still open in it: their static
    destructors run, then their JIT memory is released. Sessions are safe to
    use from several threads at once.
    """

    def __init__(self) -> None:
        self.__init_handle_by_constructor__(_ffi_api.session_create)  # type: ignore[attr-defined]

    def create_library(self, name: str | None = None) -> Library:
        """Create an empty library; ``name`` defaults to a unique ``lib<N>``.

        Names only label libraries in messages: two libraries may share one.
        """
        return _ffi_api.session_create_library(self, name or "")  # type: ignore[attr-defined]

    def load_module(
        self,
        objects: ObjectSource | Iterable[ObjectSource],
        name: str | None = None,
        keep_module_alive: bool = False,
    ) -> tvm_ffi.Module:
        """Link one or more objects into a fresh library and return it as a module.

        ``objects`` is a path, the bytes of an object, or a list (any iterable)
        mixing both; all of them are linked together, static constructors run,
        and the module's attributes are the exports (``mod.test_add(1, 2)``).
        Link errors (undefined or duplicate symbols) are raised here, not at
        the first call; an empty list is a ValueError.

        As ``tvm_ffi.load_module`` does, the library's context symbols are
        wired and the import tree it may carry in ``__tvm_ffi__library_bin`` is
        expanded: each module made by ``ffi.Module.load_from_bytes.<kind>``,
        the root returned with its ``imports``; a malformed tree is a
        ValueError.

        ``keep_module_alive=True`` adds the module to tvm-ffi's process-wide
        set of modules (``ffi.ModuleGlobalsAdd``, as ``tvm_ffi.load_module``
        does by default): the module, its library and its imports then stay
        loaded until the process exits (or the session closes), whatever
        references are dropped. By default the module is an ordinary object:
        dropping the last reference runs its static destructors and releases
        its JIT memory.
        """
        one = isinstance(objects, _PATH_TYPES + _BYTES_TYPES)
        # Anything but one object or an iterable of them: _normalize names its type.
        sources = objects if not one and isinstance(objects, Iterable) else [objects]
        items = [_normalize(obj) for obj in sources]
        if not items:
            raise ValueError(MSG_NO_OBJECTS)
        load = _ffi_api.session_load_module  # type: ignore[attr-defined]
        module: tvm_ffi.Module = load(self, items, name or "")
        if keep_module_alive:
            tvm_ffi.get_global_func("ffi.ModuleGlobalsAdd")(module)
        return module

    def close(self) -> None:
        """Close every open library, then the JIT. Idempotent."""
        _ffi_api.session_close(self)  # type: ignore[attr-defined]

    def __enter__(self) -> ExecutionSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@register_object("orcjit.Library")
class Library(Object):
    """An isolated library (JITDylib) of an execution session.

    Objects are added incrementally with :meth:`add`; they are linked when a
    function is first asked for, and static constructors of everything added
    so far run before that function is returned. A function keeps its library
    alive; :meth:`close` (or leaving a ``with`` block) releases it at once,
    running static destructors exactly once.
    """

    @property
    def name(self) -> str:
        """The library's name, as given to ``create_library`` or generated."""
        return _ffi_api.library_name(self)  # type: ignore[attr-defined, no-any-return]

    @name.setter
    def name(self, name: str) -> None:
        """Rename the library in the messages from now on (not while another thread uses it)."""
        _ffi_api.library_rename(self, name)  # type: ignore[attr-defined]

    @property
    def jit_memory(self) -> int:
        """Bytes of JIT memory (code and data pages) the library holds now.

        0 once it is closed, unless it registered an object type with tvm-ffi, whose
        reflection points into its memory: that memory is kept for the rest of the process.
        """
        return _ffi_api.library_jit_memory(self)  # type: ignore[attr-defined, no-any-return]

    def add(self, obj: ObjectSource) -> None:
        """Add a relocatable object file, given as a path or as its bytes.

        The object is checked before it is linked: a path that does not exist,
        a file that is not an x86-64 ELF relocatable object, or a symbol that
        the library already defines raise here and leave the library as it was.
        """
        item = _normalize(obj)
        if isinstance(item, str):
            _ffi_api.library_add_file(self, item)  # type: ignore[attr-defined]
        else:
            _ffi_api.library_add_bytes(self, item)  # type: ignore[attr-defined]

    def link_against(self, other: Library) -> None:
        """Resolve what this library's objects use and do not define in ``other``.

        Like a shared library linked with ``-l other``: a symbol this library
        does not define is taken from ``other``'s exported (default-visibility)
        definitions before the process's, so ``other`` may also shadow a process
        symbol (its own ``getpid``). A library may link against several, searched
        in the order of the calls; only the libraries it links against are
        searched, not theirs. ``other`` is linked, and its static constructors
        run, before this library links, and it stays open while this library is:
        closing it first raises ``RuntimeError`` (the session closes dependents
        first). Raises ``ValueError`` for a library of another session, for a
        cycle, and once this library has linked (call it before the first
        :meth:`get_function`).
        """
        if not isinstance(other, Library):
            raise TypeError(f"link_against takes a Library, not {type(other).__name__}")
        _ffi_api.library_link_against(self, other)  # type: ignore[attr-defined]

    def link(self) -> None:
        """Link the objects added since the last link and run their static constructors.

        ``get_function`` does this first; calling it ahead links a library
        before any of its functions is asked for (the plugin's fork server
        does, so that forked tests start from a linked library). Raises
        ``RuntimeError`` for a failed link, as ``get_function`` would.
        """
        _ffi_api.library_link(self)  # type: ignore[attr-defined]

    def get_function(self, name: str) -> tvm_ffi.Function:
        """Return the TVM-FFI export ``name`` (the symbol ``__tvm_ffi_<name>``).

        Links the objects added since the last call and runs their static
        constructors first. Raises ``AttributeError`` naming the function and
        the library when no object exports it.
        """
        return _ffi_api.library_get_function(self, name)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get_function(name)

    def close(self) -> None:
        """Run static destructors and release the JIT memory now. Idempotent."""
        _ffi_api.library_close(self)  # type: ignore[attr-defined]

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def create_session() -> ExecutionSession:
    """Create a new, independent execution session."""
    return ExecutionSession()


def default_session() -> ExecutionSession:
    """Return the process-wide session, created on the first call.

    Every call returns the same object (``default_session() is
    default_session()``), from any thread.
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = _ffi_api.default_session()  # type: ignore[attr-defined]
    return _default


_default: ExecutionSession | None = None
_default_lock = threading.Lock()


def load_shared_library(
    name_or_path: str | os.PathLike[str], compiler: str | Sequence[str] | None = None
) -> str:
    """Make a shared library's symbols visible to every JIT library of every session.

    For kernels that call a library the process does not load by itself: an
    OpenMP runtime (``"omp"`` for clang's ``-fopenmp``, ``"gomp"`` for gcc's),
    a BLAS, ``"cudart"``. A bare name is found as ``-l<name>`` would find it:
    through ``compiler -print-file-name=lib<name>.so`` (``compiler`` defaults
    to $CXX, else ``c++``, ``clang++`` or ``g++`` on PATH), then the loader's
    cache (``ldconfig -p``), then ``LD_LIBRARY_PATH``; a path (with a ``/``)
    is used as it is. The library is loaded ``RTLD_GLOBAL`` and stays for the
    rest of the process; sessions that were linked before see it from their
    next link. Loading one twice is harmless.

    Returns the path the library was loaded from. Raises ``ValueError`` saying
    where it looked when it is not found, or why the loader refused it.
    """
    files = shared_libraries.find(name_or_path, compiler)
    loaded = [_ffi_api.load_shared_library(file) for file in files]  # type: ignore[attr-defined]
    return str(loaded[0])


def llvm_version() -> str:
    """The version of the LLVM that the native core was built with, e.g. ``"22.1.0"``."""
    return _ffi_api.llvm_version()  # type: ignore[attr-defined, no-any-return]


def prepare_fork() -> None:
    """Build, once, the state that forked children would each build again on their first error.

    tvm-ffi symbolizes a backtrace for every error, and the first time it does
    so in a process it reads the debug information of every loaded library,
    which can take half a second and keeps tens of MB. A process that forks
    children that raise calls this once, so that the children forked after it
    do not pay for it; the plugin's isolation does so after the first forked
    test whose child needed it.
    """
    _ffi_api.prepare_fork()  # type: ignore[attr-defined]


def describe_jit_address(address: int) -> str | None:
    """Name the JIT code at ``address``: ``"NullWrite (kernels/misbehave.cc:14)"``.

    With only a symbol table the offset and source file are given instead of
    the line (``"NullWrite+0x3 (misbehave.cc)"``); ``None`` outside the code
    of open libraries. A return address names the call after it: pass
    ``address - 1`` for those. ``docs/debugging.md`` describes where names and
    lines come from.
    """
    if not isinstance(address, int) or isinstance(address, bool) or address < 0:
        raise TypeError(f"address must be a non-negative int, not {address!r}")
    described = _ffi_api.describe_jit_address(address)  # type: ignore[attr-defined]
    return None if described is None else str(described)


def install_crash_handler(fd: int = 2, on_sigterm: bool = False) -> None:
    """Make a crash of this process write where it happened to file descriptor ``fd``.

    The process's first link installs it writing to fd 2; call this to write
    elsewhere (the plugin passes the descriptor pytest's faulthandler writes
    to) or to report SIGTERM too (a forked test's timeout). A fatal signal
    then writes the signal, the fault address, the pc and the native stack,
    JIT frames named as :func:`describe_jit_address` names them, before the
    handlers installed earlier (Python's faulthandler) run. Installing again
    puts it back on top of handlers installed since.
    """
    _ffi_api.install_crash_handler(fd, on_sigterm)  # type: ignore[attr-defined]


def warm_objects(session: ExecutionSession, paths: Iterable[str | os.PathLike[str]]) -> None:
    """Link the object files at ``paths`` once, in a throwaway library whose code never runs.

    Their static constructors (and destructors) are dropped, and the library is
    closed: what stays is ``session``'s cache of the files, read, checked and
    with their link graphs prepared, which the libraries that add them later
    start from. A process about to fork children that each load these objects
    calls this once (the plugin's fork server does), so that the children do
    not each pay for it. Raises as ``Library.add`` and linking do.
    """
    files = [os.fspath(path) for path in paths]
    _ffi_api.session_warm_objects(session, files)  # type: ignore[attr-defined]


def _normalize(obj: object) -> str | bytes:
    if isinstance(obj, _BYTES_TYPES):
        return bytes(obj)
    if isinstance(obj, _PATH_TYPES):
        return os.fspath(obj)
    raise TypeError(MSG_OBJECT_TYPE.format(type=type(obj).__name__))
