"""Precompiled headers of the tvm-ffi headers, for the C++ kernels that include them first.

Parsing the tvm-ffi headers is most of the time a C++ kernel takes to compile
(two thirds of it at -O0 with clang). The builder compiles them once per
(compiler, -std, flags, tvm-ffi headers) into a precompiled header, cached
like an object, and compiles every eligible source with it: clang reads it
with ``-include-pch``, gcc finds ``<header>.gch`` beside the header given to
``-include`` (and, where the PCH does not fit, silently parses the header).

A PCH acts as if its headers were included before the source's first line, so
it is used only where that changes nothing: C++ sources whose lines before
their first ``#include <tvm/ffi/...>`` are comments, blank lines and
``#include <...>`` of other system headers (no macro is defined before the
tvm-ffi headers are read). A PCH whose own compile printed anything (a
warning inside a tvm-ffi header) is not used either, so that every source's
diagnostics stay what a plain compile prints.

A PCH costs about one plain compile to build, so one is built only for flags
that at least two sources of a batch share (or that a source compiled alone
asks for when the cache holds its PCH already); the builder starts those
builds first and compiles meanwhile the sources that need no PCH, then a few
that could use it, plainly. A PCH changes how fast a source compiles, not what
to: the object's cache key leaves it out. clang instantiates the headers'
templates in the PCH (``-fpch-instantiate-templates``), once. A source's own
``-D``/``-U`` flags (a marker's ``defines``) are left out of its PCH where the
macros they name appear nowhere in the headers the PCH holds: defining them
first or later then makes no difference, and sources that differ only in such
macros share one PCH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cache import ObjectCache
    from .compiler import Compiler

HEADERS = (
    "tvm/ffi/function.h",
    "tvm/ffi/container/tensor.h",
    "tvm/ffi/container/array.h",
    "tvm/ffi/container/map.h",
    "tvm/ffi/string.h",
    "tvm/ffi/error.h",
)
"""What the PCH holds: the tvm-ffi headers that kernels include."""

UMBRELLA = "orcjit_tvm_ffi_pch.h"
BUILD_FLAGS = {"clang": ("-fpch-instantiate-templates",), "gcc": ()}
"""Flags of a PCH's own compile: clang instantiates the headers' templates once, in the PCH,
instead of in every source (a fifth more time for the PCH, a third less for each source)."""
MODES = ("auto", "off")

_MACRO_FLAG = re.compile(r"-[DU](\w+)")
_FIRST_TVM_FFI = re.compile(r"^\s*#\s*include\s*<tvm/ffi/", re.MULTILINE)
_HARMLESS = re.compile(r"\s*(#\s*include\s*<[^>]+>\s*)?(//.*)?")


def eligible(source: Path) -> bool:
    """Whether reading the PCH before ``source`` is the same as ``source``'s own includes."""
    try:
        text = source.read_text(errors="replace")
    except OSError:
        return False
    first = _FIRST_TVM_FFI.search(text)
    if first is None:
        return False
    head = re.sub(r"/\*.*?\*/", "", text[: first.start()], flags=re.DOTALL)
    return all(_HARMLESS.fullmatch(line) for line in head.splitlines())


def split_macros(flags: Sequence[str]) -> tuple[list[str], list[str]]:
    """``flags`` without their ``-DNAME[=value]``/``-UNAME`` flags, and the macro names."""
    kept, names = [], []
    for flag in flags:
        match = _MACRO_FLAG.match(flag)
        if match:
            names.append(match.group(1))
        else:
            kept.append(flag)
    return kept, names


def family(compiler: Compiler) -> str | None:
    """``"clang"``, ``"gcc"`` or None (another compiler: no PCH) from ``--version``."""
    version = compiler.identity.partition("\n")[2]
    if "clang version" in version:
        return "clang"
    if "Free Software Foundation" in version:
        return "gcc"
    return None


class PrecompiledHeaders:
    """The PCHs of one cache, built on first use; thread-safe."""

    def __init__(self, cache: ObjectCache) -> None:
        self.cache = cache
        self.folder = cache.root / "pch"
        self._lock = threading.Lock()
        self._flags: dict[tuple[str, ...], list[str]] = {}
        self._objects: dict[tuple[str, ...], Path] = {}
        self._building: set[tuple[str, ...]] = set()
        self._named: dict[tuple[str, ...], dict[str, bool]] = {}
        """Per PCH, whether its headers name a macro (outside comments and literals)."""

    def flags(
        self,
        compiler: Compiler,
        front: Sequence[str],
        tool_key: str,
        build: bool = True,
        macros: Sequence[str] = (),
    ) -> list[str]:
        """The flags that make a compile with ``front`` (compiler, -std, flags) read the PCH.

        ``macros`` are the names a source's own ``-D``/``-U`` flags (not in
        ``front``) define: the PCH is used only where its headers name none of
        them. Builds the PCH on first use if ``build``, else uses it only if the
        cache has it. Empty where there is none: an unknown compiler family, a
        PCH not built, or one that failed to build or printed diagnostics.
        """
        kind = family(compiler)
        if kind is None:
            return []
        key = (kind, *front, tool_key)
        with self._lock:
            inputs = ["pch", kind, *front, *BUILD_FLAGS[kind], compiler.identity, tool_key]
            if key not in self._flags:
                found = self.cache.find(inputs)  # a warm run: no PCH compile, no hashing
                if found is None and not build:
                    return []
                if found is None:
                    self._building.add(key)
                    try:
                        found = self._build(kind, list(front), inputs)
                    finally:
                        self._building.discard(key)
                self._objects[key] = found
                self._flags[key] = self._use(kind, found)
            if macros and self._flags[key] and self._names_any(key, inputs, macros):
                return []  # a macro of the source's could change what the headers declare
            return self._flags[key]

    def building(self, compiler: Compiler, front: Sequence[str], tool_key: str) -> bool:
        """Whether a thread is compiling the PCH for ``front`` now."""
        return (family(compiler), *front, tool_key) in self._building

    def _names_any(self, key: tuple[str, ...], inputs: list[str], macros: Sequence[str]) -> bool:
        """Whether the headers of the PCH of ``inputs`` name one of ``macros``.

        The answers are remembered beside the PCH (whose name changes with its
        headers' content), so a warm run reads no header.
        """
        memo_path = self._objects[key].with_suffix(".macros")
        named = self._named.get(key)
        if named is None:
            named = self._named[key] = _read_answers(memo_path)
        missing = [name for name in macros if name not in named]
        if missing:
            named.update(_named_in(self.cache.dependencies(inputs), missing))
            self.cache._write_atomic(memo_path, json.dumps(named).encode())
        return any(named[name] for name in macros)

    def _build(self, kind: str, front: list[str], inputs: list[str]) -> Path:
        """Compile the PCH through the cache (once across processes); its cache path."""
        umbrella = self._umbrella()

        def build(output: Path) -> list[Path]:
            from .compiler import parse_depfile

            depfile = f"{output}.d"
            argv = [*front, *BUILD_FLAGS[kind], "-x", "c++-header", str(umbrella), "-MD", "-MF",
                    depfile, "-o", str(output)]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0 or (done.stdout + done.stderr).strip():
                output.write_bytes(b"")  # remembered: no PCH for these flags
                return [umbrella]
            return parse_depfile(Path(depfile).read_text())

        return self.cache.get(inputs, build).object

    def _use(self, kind: str, pch: Path) -> list[str]:
        """The flags that read the PCH at ``pch`` (none for an empty one: it failed)."""
        if pch.stat().st_size == 0:
            return []
        if kind == "clang":
            return ["-include-pch", str(pch)]
        # gcc looks for <header>.gch beside the header named by -include.
        folder = self.folder / pch.stem
        header, gch = folder / UMBRELLA, folder / f"{UMBRELLA}.gch"
        if not gch.exists():
            folder.mkdir(parents=True, exist_ok=True)
            self.cache._write_atomic(header, self._umbrella().read_bytes())
            tmp = folder / f".{os.getpid()}.{threading.get_ident()}.gch"
            os.link(pch, tmp)
            os.replace(tmp, gch)
        return ["-include", str(header)]

    def _umbrella(self) -> Path:
        path = self.folder / UMBRELLA
        text = "".join(f"#include <{header}>\n" for header in HEADERS).encode()
        if not path.exists() or path.read_bytes() != text:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.cache._write_atomic(path, text)
        return path


_TOKEN = re.compile(r"""/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|(\w+)""", re.S)
"""A comment, a string or character literal, or a word (group 1): macros expand only in code."""


def _named_in(files: Sequence[Path], names: Sequence[str]) -> dict[str, bool]:
    """For each of ``names``, whether a word outside comments and literals of ``files`` (a
    PCH's headers) is that name; all True if a file cannot be read (any macro may matter).

    Only the files that contain a name anywhere are split into words.
    """
    found = dict.fromkeys(names, False)
    if not files:
        return dict.fromkeys(names, True)
    for file in files:
        try:
            data = file.read_bytes()
        except OSError:
            return dict.fromkeys(names, True)
        candidates = [name for name in names if not found[name] and name.encode() in data]
        if candidates:
            words = set(_TOKEN.findall(data.decode(errors="replace")))
            found.update((name, True) for name in candidates if name in words)
    return found


def _read_answers(path: Path) -> dict[str, bool]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {name: value for name, value in data.items() if isinstance(value, bool)}
