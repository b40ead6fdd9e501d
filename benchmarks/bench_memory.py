"""Figure 4: JIT memory per library, and what 10,000 loads leave behind.

Each measurement runs in its own worker process with one pytest_orcjit session:

* ``jit_memory``: KiB of JIT memory (``Library.jit_memory``: code and data pages,
  including the page of ``__dso_handle``) of the four-object library of figure 1;
* ``cycles``: RSS growth over ``--cycles`` load + call + drop cycles of that library
  (goal: under 2 MiB);
* one ``failing`` worker per bad-input kind: RSS growth over ``--cycles`` loads
  that fail (missing path, directory, empty file, text, truncated object, ELF
  magic then noise, a shared library, an aarch64 object, the bytes of a
  truncated object, an undefined symbol, a duplicate symbol).

RSS is read from /proc/self/statm after ``gc.collect()``, once after
``WARM_UP`` cycles (caches, allocator arenas and error machinery are warm) and
once at the end. No assertions.

    python benchmarks/bench_memory.py [--cycles 10000]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import tempfile
from pathlib import Path

from common import (
    CXX,
    LIBRARY_SOURCES,
    Row,
    compile_kernels,
    print_table,
    run_worker,
    serve_worker,
)

WARM_UP = 200
GOAL_KIB = 2048

BAD_KINDS = (
    "missing",
    "directory",
    "empty",
    "text",
    "truncated",
    "elf_noise",
    "shared_library",
    "aarch64",
    "truncated_bytes",
    "undefined_symbol",
    "duplicate_symbol",
)


def rss_kib() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def make_inputs(tmp: Path) -> dict[str, list[str]]:
    """The objects of the library, and the input of each bad kind, as lists of paths."""
    good = [str(path) for path in compile_kernels(LIBRARY_SOURCES, tmp / "good")]
    (math_ops,) = compile_kernels(["math_ops.cc"], tmp / "one")
    data = math_ops.read_bytes()
    bad = tmp / "bad"
    bad.mkdir()
    files = {
        "empty": b"",
        "text": b"just some text\n" * 20,
        "truncated": data[: len(data) // 2],
        "elf_noise": b"\x7fELF" + random.Random(20).randbytes(4096),
    }
    for name, content in files.items():
        (bad / f"{name}.o").write_bytes(content)
    (shared,) = compile_kernels(["math_ops.cc"], tmp / "so", shared=True)
    aarch64 = tmp / "aarch64.o"
    cc = CXX.replace("++", "")
    source = str(Path(__file__).resolve().parent.parent / "tests" / "kernels" / "aarch64.c")
    os.spawnvp(os.P_WAIT, cc, [cc, "--target=aarch64-linux-gnu", "-c", source, "-o", str(aarch64)])
    (undefined,) = compile_kernels(["undefined_symbol.cc"], tmp / "undefined")
    (duplicate,) = compile_kernels(["duplicate_symbol.cc"], tmp / "duplicate")
    inputs = {
        "good": good,
        "missing": [str(bad / "no_such_kernel.o")],
        "directory": [str(bad)],
        **{name: [str(bad / f"{name}.o")] for name in files},
        "shared_library": [str(shared)],
        "aarch64": [str(aarch64)],
        "truncated_bytes": [str(bad / "truncated.o")],  # the worker passes its bytes
        "undefined_symbol": [str(undefined)],
        "duplicate_symbol": [str(math_ops), str(duplicate)],
    }
    return inputs


def worker(kind: str, cycles: str, *paths: str) -> dict:
    import pytest_orcjit

    session = pytest_orcjit.ExecutionSession()
    if kind == "jit_memory":
        lib = session.create_library()
        for path in paths:
            lib.add(path)
        lib.get_function("test_add")(1, 2)
        return {"jit_memory": lib.jit_memory}
    objects: list[str | bytes] = list(paths)
    if kind == "truncated_bytes":
        objects = [Path(paths[0]).read_bytes()]

    def cycle() -> None:
        if kind == "good":
            module = session.load_module(objects)
            module.test_add(1, 2)
            del module
            return
        try:
            session.load_module(objects)
        except Exception:
            return
        raise SystemExit(f"loading {kind} did not fail")

    for _ in range(WARM_UP):
        cycle()
    start = rss_kib()
    for _ in range(int(cycles)):
        cycle()
    return {"start": start, "end": rss_kib()}


def figures(cycles: int = 10000) -> list[Row]:
    script = Path(__file__)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        inputs = make_inputs(Path(tmp))
        memory = run_worker(script, ["jit_memory", "0", *inputs["good"]])["jit_memory"]
        rows.append(Row("4. JIT memory of the 4-object library, KiB", f"{memory / 1024:.0f}"))
        for kind in ("good", *BAD_KINDS):
            data = run_worker(script, [kind, str(cycles), *inputs[kind]])
            grown = data["end"] - data["start"]
            what = "load+call+drop cycles" if kind == "good" else f"failing loads ({kind})"
            rows.append(
                Row(
                    f"4. RSS growth over {cycles} {what}, KiB",
                    f"{grown:+d}",
                    "",
                    "",
                    f"< {GOAL_KIB}",
                )
            )
    return rows


def main() -> None:
    if serve_worker(worker):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=10000)
    args = parser.parse_args()
    print_table(figures(args.cycles))


if __name__ == "__main__":
    main()
