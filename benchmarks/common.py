"""What the benchmark scripts share: kernel objects, worker processes, medians, table rows.

Every figure is measured in worker processes started with an argument list
(``python <script> --worker ...``) that print one JSON line; the scripts here
only start them, collect their numbers and print rows. Objects are compiled
from ``tests/kernels`` with the installed compilers into a temporary directory.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tvm_ffi.libinfo

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "tests" / "kernels"
CXX = "clang++-22"
CXX_FLAGS = ("-std=c++20", "-fPIC", "-O2")

BARE_ROUND_TRIP = """
def bare_round_trip():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"x")
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    os.waitpid(pid, 0)
    os.close(r)
"""
"""Conftest code (it needs ``os``): ``bare_round_trip()``, the reference of the isolation
figures: a bare fork + pipe + waitpid, the child writing one byte and leaving at once."""

LIBRARY_SOURCES = ("math_ops.cc", "static_init.cc", "string_ops.cc", "tensor_ops.cc")
"""The four objects of the benchmark library: TVM-FFI exports, static constructors, strings,
tensors."""


def include_flags() -> list[str]:
    """``-I`` flags for tvm-ffi's and DLPack's headers."""
    folders = {tvm_ffi.libinfo.find_include_path(), tvm_ffi.libinfo.find_dlpack_include_path()}
    return [f"-I{folder}" for folder in sorted(folders)]


def compile_kernels(
    sources: Sequence[str], out_dir: Path, *, compiler: str = CXX, shared: bool = False
) -> list[Path]:
    """Compile each of ``sources`` (file names in tests/kernels) into ``out_dir``.

    Relocatable objects (``-c``) by default; with ``shared`` one shared library
    of all of them (``-shared``), returned as a one-element list.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    base = [compiler, *CXX_FLAGS, *include_flags()]
    if shared:
        target = out_dir / ("_".join(Path(s).stem for s in sources) + ".so")
        subprocess.run(
            [*base, "-shared", *(str(KERNELS / s) for s in sources), "-o", str(target)], check=True
        )
        return [target]
    objects = []
    for source in sources:
        target = out_dir / (Path(source).stem + ".o")
        subprocess.run([*base, "-c", str(KERNELS / source), "-o", str(target)], check=True)
        objects.append(target)
    return objects


def run_worker(script: Path, args: Sequence[str], env: dict[str, str] | None = None) -> dict:
    """Run ``python script --worker args...`` and return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, str(script), "--worker", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
    )
    if done.returncode != 0:
        sys.exit(f"worker {script.name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def serve_worker(worker: Callable[..., dict]) -> bool:
    """In a worker process (``script --worker args...``): print ``worker(*args)`` as JSON and
    return True; in the parent, return False."""
    if len(sys.argv) < 2 or sys.argv[1] != "--worker":
        return False
    print(json.dumps(worker(*sys.argv[2:])))
    return True


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass
class Row:
    """One line of the benchmark table. ``ratio`` is ours / reference when both are numbers."""

    figure: str
    ours: str
    reference: str = ""
    ratio: str = ""
    goal: str = ""


def ratio(ours: float, reference: float) -> str:
    return f"{ours / reference:.2f}x" if reference else ""


def print_table(rows: Sequence[Row]) -> None:
    header = Row("figure", "ours", "reference", "ratio", "goal")
    widths = [
        max(len(getattr(row, field)) for row in (header, *rows))
        for field in ("figure", "ours", "reference", "ratio", "goal")
    ]
    for row in (header, None, *rows):
        if row is None:
            print("  ".join("-" * width for width in widths))
            continue
        cells = (row.figure, row.ours, row.reference, row.ratio, row.goal)
        print("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
