"""Finding the shared libraries that kernels call: the OpenMP runtime, a BLAS, libcudart.

``find(name_or_path)`` turns what a user writes (``"gomp"``, ``"libm.so.6"``,
``"/opt/lib/libfoo.so"``) into the files to load, the way ``-lgomp`` would
find them: the C++ compiler's ``-print-file-name=libgomp.so``, then the
loader's cache (``ldconfig -p``, through ``ctypes.util.find_library``), then
``LD_LIBRARY_PATH``. A path is used as it is. A linker script (``libm.so`` is
one: ``GROUP ( libm.so.6 ... )``) stands for the shared libraries it names.
Loading is :func:`pytest_orcjit.api.load_shared_library`'s job; this module
runs compilers but does not load the native core.
"""

from __future__ import annotations

import ctypes.util
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Union

Compiler = Union[str, Sequence[str], None]
"""A compiler command (``"clang++-22"``, ``["ccache", "g++"]``), or None for the default."""

DEFAULT_COMPILERS = ("c++", "clang++", "g++")
"""Asked, the first found on PATH, when neither the caller nor $CXX names a compiler."""

MSG_NOT_FOUND = (
    "cannot find the shared library {name!r}: looked for {file} with {looked}; install it, or "
    "pass the path of the .so file (pytest_orcjit.load_shared_library('/path/to/{file}'), "
    "--orcjit-libs /path/to/{file})"
)
MSG_NO_FILE = "the shared library {path!r} does not exist; check the path"
MSG_ASAN_LATE = (
    "cannot load {path!r}: the AddressSanitizer runtime must be the first library of the process, "
    "and loading it now would end the process; run pytest with --orcjit-sanitize=address (it "
    "restarts itself with the runtime preloaded), or start Python with LD_PRELOAD={path}"
)
MSG_TYPE = "load_shared_library takes a library name (such as 'gomp') or a path, not {type}"

_ELF_MAGIC = b"\x7fELF"
_ASAN_RUNTIME = re.compile(r"lib(?:asan|clang_rt\.asan-[\w-]+)\.so[.\d]*")
_found: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def locate(name_or_path: str | os.PathLike[str], compiler: Compiler = None) -> list[str]:
    """The files to load for ``name_or_path``, the library itself first; ValueError if none.

    A name with no ``/`` is searched for (``"gomp"``, ``"libgomp"`` and
    ``"libgomp.so"`` are the same; ``"libgomp.so.1"`` is that file); anything
    else is a path. ``compiler`` is the compiler whose library paths come
    first (default: $CXX, else ``c++``, ``clang++`` or ``g++`` on PATH).
    Answers for names are remembered for the process.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(MSG_TYPE.format(type=type(name_or_path).__name__))
    given = os.fspath(name_or_path)
    if "/" in given:
        if not os.path.exists(given):
            raise ValueError(MSG_NO_FILE.format(path=given))
        return _expand(given)
    command = _compiler_command(compiler)
    key = (given, tuple(command))
    if key not in _found:
        _found[key] = _expand(_search(given, command))
    return _found[key]


def find(name_or_path: str | os.PathLike[str], compiler: Compiler = None) -> list[str]:
    """The files to load now for ``name_or_path`` (:func:`locate`); ValueError if none.

    An AddressSanitizer runtime that the process did not load first is refused
    (ValueError): loading it would end the process.
    """
    return _refuse_late_asan(locate(name_or_path, compiler))


def _refuse_late_asan(files: list[str]) -> list[str]:
    """``files``; ValueError if one is an AddressSanitizer runtime the process does not have."""
    asan = [path for path in files if _ASAN_RUNTIME.fullmatch(os.path.basename(path))]
    if asan and not hasattr(ctypes.CDLL(None), "__asan_init"):
        raise ValueError(MSG_ASAN_LATE.format(path=asan[0]))
    return files


def _search(name: str, compiler: list[str]) -> str:
    """The path (or the loader's file name) of the library called ``name``."""
    file = name if ".so" in name else f"lib{name.removeprefix('lib')}.so"
    looked = []
    if compiler:
        printed = _print_file_name(compiler, file)
        if printed is not None:
            return printed
        looked.append(f"{shlex.join(compiler)} -print-file-name={file}")
    else:
        looked.append(f"no C++ compiler (none of $CXX, {', '.join(DEFAULT_COMPILERS)} on PATH)")
    stem = re.sub(r"^lib|\.so.*$", "", file)
    loader = ctypes.util.find_library(stem)
    if loader is not None and (file == f"lib{stem}.so" or loader.startswith(file)):
        return loader
    looked.append("the loader's cache (ldconfig -p)")
    folders = [folder for folder in os.environ.get("LD_LIBRARY_PATH", "").split(":") if folder]
    for folder in folders:
        for candidate in sorted(Path(folder).glob(f"{file}*")):
            if re.fullmatch(rf"{re.escape(file)}(\.\d+)*", candidate.name):
                return str(candidate)
    looked.append(f"LD_LIBRARY_PATH ({':'.join(folders) or 'not set'})")
    raise ValueError(MSG_NOT_FOUND.format(name=name, file=file, looked=", ".join(looked)))


def _compiler_command(compiler: Compiler) -> list[str]:
    if compiler:
        return shlex.split(compiler) if isinstance(compiler, str) else list(compiler)
    if os.environ.get("CXX"):
        return shlex.split(os.environ["CXX"])
    for name in DEFAULT_COMPILERS:
        if shutil.which(name):
            return [name]
    return []


def _print_file_name(compiler: list[str], file: str) -> str | None:
    """What ``compiler -print-file-name=file`` finds, or None (it prints the name back)."""
    try:
        done = subprocess.run([*compiler, f"-print-file-name={file}"], capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    printed = done.stdout.strip()
    if done.returncode != 0 or "/" not in printed or not os.path.exists(printed):
        return None
    return os.path.normpath(printed)


def _expand(path: str) -> list[str]:
    """``[path]``, or for a linker script the shared libraries that it names."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(4096)
    except OSError:
        return [path]  # a file name for the loader to search, or unreadable: the loader says
    if head.startswith(_ELF_MAGIC) or (b"GROUP" not in head and b"INPUT" not in head):
        return [path]
    text = re.sub(rb"/\*.*?\*/", b" ", head, flags=re.S).decode(errors="replace")
    names = re.findall(r"[^\s()]+\.so(?:\.\d+)*(?=[\s()]|$)", text)
    return [name for name in names if os.path.exists(name)] or [path]
