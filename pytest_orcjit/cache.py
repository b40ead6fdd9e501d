"""The object cache: compiled objects keyed by everything that shaped them.

An entry is found in two steps. The *manifest key* hashes what is known before
compiling (the source's path, the flags, the compiler's identity and the
tvm-ffi version); its manifest lists the files the last compile read (the
source and every header, from the compiler's depfile). The *object key* hashes
the manifest key with the current content of those files, so editing a header
changes the object key of exactly the sources that include it, and reverting
the edit finds the earlier object again. File hashes are remembered by the
file's stat (``hashes.json``), so a warm run reads no header.

Writers take a per-entry ``fcntl.flock`` lock, build into a temporary name and
``os.replace`` the result into place, so concurrent pytest processes never
compile one entry twice at once nor read half an object. Every object has a
sidecar with its size and sha256; a read that does not match is discarded with
a note (the caller turns notes into warnings) and rebuilt. Source text stored
for compiling is named by its hash and replaced when its content differs.

Nothing here knows about compilers or pytest: ``ObjectCache.get`` is given a
``build`` callback that writes an object file and returns the files it read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

MSG_CORRUPT = "orcjit cache: discarded corrupt entry {path} ({reason}); rebuilding it"
"""A note for a cached object whose size or sha256 differs from its sidecar."""

Build = Callable[[Path], Sequence[Path]]
"""Writes an object file to the given path; returns the files the compile read."""


class CacheWarning(UserWarning):
    """A cache entry was unusable (truncated, foreign) and was rebuilt."""


@dataclass
class Entry:
    """The result of a cache lookup: the object's path and how it was obtained."""

    object: Path
    reused: bool
    notes: list[str] = field(default_factory=list)


StatKey = tuple[str, int, int, int, int, int]
"""A file's path, size, modification and change times (ns), inode and device."""

_HASHES: dict[StatKey, str] = {}
"""sha256 of files by path and stat, for the files not changed lately; kept in the cache."""
_UNSAVED: set[StatKey] = set()
"""Keys of ``_HASHES`` hashed by this process and not written to a cache yet."""

RACY_NS = 2_000_000_000
"""A file changed less than this long ago may change again within its timestamps' granularity
without them moving: its hash is not remembered."""


def _stat_key(path: str | os.PathLike[str]) -> StatKey:
    st = os.stat(path)
    return (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's content, remembered while the file's stat stays the same.

    A change to a file's content changes its change time (ctime), which no
    program can set back. Only the hashes of files whose times are older than
    ``RACY_NS`` are remembered: a newer file could change again within one
    tick of its file system's clock.
    """
    key = _stat_key(path)
    known = _HASHES.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as stream:  # changed after the stat: remembered under the old one
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    if time.time_ns() - max(key[2], key[3]) > RACY_NS:
        _HASHES[key] = digest.hexdigest()
        _UNSAVED.add(key)
    return digest.hexdigest()


def sha256_text(*parts: str) -> str:
    """The hex sha256 of strings joined unambiguously."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class ObjectCache:
    """A directory of compiled objects, safe to share between processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._hashes = self.root / "hashes.json"
        self._hashes_read = False

    def save_hashes(self) -> None:
        """Keep the file hashes this process computed in the cache, for the next run.

        The file holds only entries that still match their file's stat; a
        concurrent writer may win, which costs the other's hashes only.
        """
        if not _UNSAVED:
            return
        entries = {**self._read_hashes(), **{key: _HASHES[key] for key in list(_UNSAVED)}}
        _UNSAVED.clear()
        valid = []
        for key, digest in entries.items():
            with contextlib.suppress(OSError):
                if _stat_key(key[0]) == key:
                    valid.append([*key, digest])
        with contextlib.suppress(OSError):
            self._write_atomic(self._hashes, json.dumps(valid).encode())

    def _read_hashes(self) -> dict[StatKey, str]:
        entries = {}
        try:
            for path, size, mtime, ctime, ino, dev, digest in json.loads(self._hashes.read_text()):
                key = (str(path), int(size), int(mtime), int(ctime), int(ino), int(dev))
                entries[key] = str(digest)
        except (OSError, ValueError, TypeError):
            return {}
        return entries

    def get(self, inputs: Sequence[str], build: Build) -> Entry:
        """Return the object for ``inputs``, building it with ``build`` if needed.

        ``inputs`` are the strings known before compiling (source path, flags,
        compiler identity, tool versions). Exceptions of ``build`` propagate and
        leave the cache as it was.
        """
        manifest_key = sha256_text(*inputs)
        found = self._lookup(manifest_key, notes=None)
        if found is not None:
            return Entry(found, reused=True)
        with self._locked(manifest_key):
            notes: list[str] = []
            found = self._lookup(manifest_key, notes)
            if found is not None:  # another process built it while we waited
                return Entry(found, reused=True, notes=notes)
            return Entry(self._build(manifest_key, build), reused=False, notes=notes)

    def find(self, inputs: Sequence[str]) -> Path | None:
        """The object for ``inputs`` if the cache has it, without building anything.

        Only its size is checked against the sidecar, not its sha256: for large
        entries (a precompiled header) that a compiler reads and checks itself.
        """
        return self._lookup(sha256_text(*inputs), notes=None, content=False)

    def dependencies(self, inputs: Sequence[str]) -> list[Path]:
        """The files the last build of ``inputs`` read (from its manifest); [] if none."""
        try:
            manifest = json.loads((self.root / f"{sha256_text(*inputs)}.manifest").read_text())
            return [Path(dep) for dep in manifest["deps"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def write_source(self, text: str, suffix: str) -> Path:
        """Store source text under a name derived from its content; return the path.

        A file already there with other content (truncated, foreign) would be
        compiled in place of ``text``: it is replaced, with a CacheWarning.
        """
        path = self.root / "sources" / f"{sha256_text(text)[:32]}{suffix}"
        data = text.encode()
        try:
            if path.read_bytes() == data:
                return path
            reason = "content does not match its name"
            warnings.warn(MSG_CORRUPT.format(path=path, reason=reason), CacheWarning, stacklevel=3)
        except FileNotFoundError:
            path.parent.mkdir(exist_ok=True)
        self._write_atomic(path, data)
        return path

    # Lookup and build, in the order ``get`` uses them.

    def _lookup(
        self, manifest_key: str, notes: list[str] | None, content: bool = True
    ) -> Path | None:
        """The verified object of the manifest's current inputs, else None.

        Without ``notes`` (no lock held) a mismatch is only a miss: a writer may
        be replacing the entry. With ``notes`` (lock held) it is corruption.
        """
        if not self._hashes_read:
            self._hashes_read = True
            for key, digest in self._read_hashes().items():
                _HASHES.setdefault(key, digest)
        try:
            deps = json.loads((self.root / f"{manifest_key}.manifest").read_text())["deps"]
            object_key = _object_key(manifest_key, deps)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no manifest yet, or a file it lists is gone
        obj = self.root / f"{object_key}.o"
        reason = _verify(obj, content)
        if reason is None:
            return obj
        if notes is not None and reason != "missing":
            notes.append(MSG_CORRUPT.format(path=obj, reason=reason))
        return None

    def _build(self, manifest_key: str, build: Build) -> Path:
        scratch = self.root / "tmp"
        scratch.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            tmp_obj = Path(tmp) / "out.o"
            deps = list(build(tmp_obj))
            object_key = _object_key(manifest_key, deps)
            obj = self.root / f"{object_key}.o"
            sidecar = {"size": tmp_obj.stat().st_size, "sha256": sha256_file(tmp_obj)}
            os.replace(tmp_obj, obj)
        self._write_atomic(_sidecar(obj), json.dumps(sidecar).encode())
        manifest = {"deps": [str(dep) for dep in deps]}
        self._write_atomic(self.root / f"{manifest_key}.manifest", json.dumps(manifest).encode())
        return obj

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        with open(self.root / f"{key}.lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _object_key(manifest_key: str, deps: Sequence[str | Path]) -> str:
    """Hash the manifest key with the path and current content of every dependency."""
    parts = [manifest_key]
    for dep in deps:
        if not isinstance(dep, (str, Path)):  # a damaged manifest (an int would be a descriptor)
            raise TypeError(f"not a path: {dep!r}")
        parts += [str(dep), sha256_file(dep)]
    return sha256_text(*parts)


def _sidecar(obj: Path) -> Path:
    return obj.with_suffix(".json")


def _verify(obj: Path, content: bool = True) -> str | None:
    """None when ``obj`` matches its sidecar (its size, and its sha256 if ``content``), else
    why not ("missing" if absent)."""
    try:
        expected = json.loads(_sidecar(obj).read_text())
        size = obj.stat().st_size
    except FileNotFoundError:
        return "no sidecar" if obj.exists() else "missing"
    except (OSError, ValueError) as err:
        return f"unreadable sidecar: {err}"
    if not isinstance(expected, dict) or size != expected.get("size"):
        return f"size {size} does not match the sidecar"
    if content and sha256_file(obj) != expected.get("sha256"):
        return "sha256 does not match the sidecar"
    return None
