"""Debugger registration: load time of -g objects with GDB JIT registration on against off.

The library of figure 1 (the four C++ objects of ``tests/kernels``, clang++-22
-O2) compiled with ``-g``: each load registers a debug object per object with
the GDB JIT interface (a copy of the object, its section addresses set) and
dropping the module unregisters it. The same loads with registration turned
off (PYTEST_ORCJIT_DEBUG_REGISTRATION=0) are the reference; a second row does
the same for the objects compiled without ``-g``, where registration must
cost nothing. Each setting runs in its own worker process (figure 1's worker:
load + first call + drop, median thread CPU time and wall time).

    python benchmarks/bench_debuginfo.py [--loads 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import bench_load
from common import (
    CXX,
    CXX_FLAGS,
    KERNELS,
    LIBRARY_SOURCES,
    Row,
    include_flags,
    median,
    print_table,
    ratio,
    run_worker,
)

SETTING = "PYTEST_ORCJIT_DEBUG_REGISTRATION"


def compile_objects(out_dir: Path, flags: tuple[str, ...]) -> list[str]:
    """The library's objects, compiled with ``flags`` added."""
    out_dir.mkdir(parents=True, exist_ok=True)
    objects = []
    for source in LIBRARY_SOURCES:
        target = out_dir / (Path(source).stem + ".o")
        command = [CXX, *CXX_FLAGS, *flags, *include_flags(), "-c", str(KERNELS / source)]
        subprocess.run([*command, "-o", str(target)], check=True)
        objects.append(str(target))
    return objects


def measure(objects: list[str], loads: int, repeat: int) -> dict[str, dict[str, float]]:
    """Median CPU and wall ms per load with registration on and off, in A-B-B-A order."""
    samples: dict[str, dict[str, list[float]]] = {s: {"wall": [], "cpu": []} for s in ("1", "0")}
    script = Path(bench_load.__file__)
    for i in range(repeat):
        for setting in ("1", "0") if i % 2 == 0 else ("0", "1"):  # A-B-B-A
            data = run_worker(script, ["ours", str(loads), *objects], env={SETTING: setting})
            for key in ("wall", "cpu"):
                samples[setting][key] += data[key]
    return {
        setting: {key: median(values) * 1e3 for key, values in by_key.items()}
        for setting, by_key in samples.items()
    }


def figures(loads: int = 300, repeat: int = 3) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_debuginfo_") as tmp:
        for name, flags in (("-g", ("-g",)), ("no -g", ())):
            objects = compile_objects(Path(tmp) / name.replace(" ", "_"), flags)
            result = measure(objects, loads, repeat)
            on, off = result["1"], result["0"]
            label = f"5. load+call+drop, 4 objects {name}, registration on vs off"
            goal = "~1.0x" if name == "no -g" else "report"
            for key, unit in (("cpu", "CPU ms"), ("wall", "wall ms")):
                rows.append(
                    Row(
                        f"{label}, {unit}",
                        f"{on[key]:.3f}",
                        f"{off[key]:.3f}",
                        ratio(on[key], off[key]),
                        goal,
                    )
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_table(figures(args.loads, args.repeat))


if __name__ == "__main__":
    main()
