"""Choosing compilers and knowing exactly which compiler a command runs.

``find_cxx``/``find_cc`` pick the compilers; :meth:`Compiler.probe` resolves a
command and reads its identity, which is part of every cache key. A launcher
(``ccache``, ``sccache``...) in front of the compiler, given with
``--orcjit-launcher`` or written into the command (``"ccache clang++"``), runs
every compile but does not change what it produces, so the identity is the
compiler's own: its resolved path and ``--version``. A wrapper script that is
not a known launcher is asked which compiler it runs (``-###``), and that
compiler's file is part of the identity too, so upgrading the compiler behind
a wrapper starts new objects. The identities are remembered in the cache (per
file, size and modification time), so that a warm run starts no compiler.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

KNOWN_LAUNCHERS = ("ccache", "sccache", "buildcache", "distcc", "icecc")
"""Commands that run the compiler given as their first argument."""


class CompilerNotFound(Exception):
    """The chosen compiler cannot be run; the message says which and why."""


@dataclass(frozen=True)
class Compiler:
    """A compiler command (with its launcher, if any) and the compiler's identity."""

    command: tuple[str, ...]
    """What runs a compile: the launcher's command, then the compiler's."""
    version: str
    """The first line of ``--version``, for reports."""
    identity: str
    """The compiler's resolved path, ``--version`` output and, behind a wrapper script, the
    file of the compiler it runs: part of every cache key."""
    launcher: tuple[str, ...] = ()
    """The launcher's part of ``command``."""

    @property
    def driver(self) -> tuple[str, ...]:
        """The compiler's part of ``command``."""
        return self.command[len(self.launcher) :]

    @classmethod
    def probe(
        cls,
        command: str | Sequence[str],
        state_dir: Path | None = None,
        launcher: str | Sequence[str] = (),
    ) -> Compiler:
        """Resolve ``command`` (and ``launcher``) on PATH and read the compiler's identity.

        Raises CompilerNotFound. With ``state_dir``, the identity is remembered
        there, so a warm run starts no compiler.
        """
        argv, front = _split(command), _split(launcher)
        if len(argv) > 1 and os.path.basename(argv[0]) in KNOWN_LAUNCHERS:
            front, argv = [*front, argv[0]], argv[1:]
        if front:
            found = shutil.which(front[0])
            if found is None:
                raise CompilerNotFound(f"the launcher {shlex.join(front)!r} is not found on PATH")
            front = [found, *front[1:]]
        exe = shutil.which(argv[0]) if argv else None
        if exe is None:
            raise CompilerNotFound(f"{shlex.join(argv) or '(empty)'!r} is not found on PATH")
        real = os.path.realpath(exe)
        memo_path = state_dir / "compilers.json" if state_dir else None
        memo = _read_json(memo_path) if memo_path else {}
        memo_key = f"{shlex.join([real, *argv[1:]])} {_stamp(real)}"
        known = memo.get(memo_key)
        if not (isinstance(known, dict) and _stamp(known.get("behind") or real) == known["stamp"]):
            with ThreadPoolExecutor(max_workers=1) as pool:  # both questions at once
                asked = pool.submit(_compiler_behind, [exe, *argv[1:]])
                output = _version_output([exe, *argv[1:]])
                behind = asked.result()
            known = {"output": output, "behind": behind, "stamp": _stamp(behind or real)}
            if memo_path is not None:
                memo[memo_key] = known
                _write_json(memo_path, memo)
        output = str(known["output"])
        first = output.strip().splitlines()[0] if output.strip() else "unknown version"
        behind_line = f"\n{known['behind']} {known['stamp']}" if known.get("behind") else ""
        identity = f"{real}{behind_line}\n{output}"
        return cls((*front, exe, *argv[1:]), first, identity, tuple(front))


def find_cxx(explicit: str | None = None) -> str:
    """The C++ compiler: ``explicit``, else ``$CXX``, else the newest clang++ on PATH, else g++."""
    if explicit:
        return explicit
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    ranked = sorted(_clangs_on_path(), key=lambda found: found[0])
    return ranked[-1][1] if ranked else "g++"


def find_cc(cxx: str, explicit: str | None = None) -> str:
    """The C compiler: ``explicit``, else ``$CC``, else the C twin of ``cxx``."""
    if explicit:
        return explicit
    if os.environ.get("CC"):
        return os.environ["CC"]
    argv = shlex.split(cxx)
    head, name = os.path.split(argv[-1])
    for cxx_part, c_part in (("clang++", "clang"), ("g++", "gcc"), ("c++", "cc")):
        twin = os.path.join(head, name.replace(cxx_part, c_part, 1))
        if cxx_part in name and shutil.which(twin):
            return shlex.join([*argv[:-1], twin])
    return cxx  # a C++ driver compiles C too, told so with -x c


def _split(command: str | Sequence[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _stamp(path: str) -> str:
    """Size and modification time of ``path``, or "" if it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return ""
    return f"{stat.st_size} {stat.st_mtime_ns}"


def _compiler_behind(argv: list[str]) -> str | None:
    """The compiler executable a driver or wrapper script runs, from its ``-###`` output.

    None where the command does not answer ``-###`` (nvcc) or names nothing
    but itself.
    """
    probe = [*argv, "-###", "-x", "c", "-c", os.devnull, "-o", os.devnull]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in done.stderr.splitlines():
        if not line.startswith(" "):
            continue
        words = shlex.split(line) if line.count('"') % 2 == 0 else line.split()
        if words and os.path.isabs(words[0]) and os.path.isfile(words[0]):
            return os.path.realpath(words[0])
    return None


def _clangs_on_path() -> Iterable[tuple[int, str]]:
    """(major version, name) of every ``clang++``/``clang++-NN`` on PATH."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        with contextlib.suppress(OSError), os.scandir(folder or ".") as entries:
            for entry in entries:
                match = re.fullmatch(r"clang\+\+(?:-(\d+))?", entry.name)
                if match and os.access(entry.path, os.X_OK):
                    # a bare clang++ usually links to .../llvm-NN/bin/clang
                    target = re.search(r"(?:llvm|clang)-(\d+)", os.path.realpath(entry.path))
                    major = match.group(1) or (target.group(1) if target else "0")
                    yield int(major), entry.name


def _version_output(argv: list[str]) -> str:
    try:
        done = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CompilerNotFound(f"{shlex.join(argv)!r} cannot be run: {err}") from err
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise CompilerNotFound(f"'{shlex.join(argv)} --version' exited {done.returncode}: {detail}")
    return done.stdout


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, object]) -> None:
    from .cache import ObjectCache

    ObjectCache(path.parent)._write_atomic(path, json.dumps(data).encode())
