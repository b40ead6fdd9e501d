"""Nothing leaks: loads that succeed and loads that fail leave RSS where it was.

A small version of ``benchmarks/bench_memory.py`` (10,000 cycles each, goal
under 2 MiB): few cycles and a generous bound, so that it is fast and a real
leak of a library's worth of memory per load (its objects, its JIT pages, its
JITDylib) still shows. RSS is read after ``gc.collect()``, once warm-up cycles
have filled the caches and the allocator. No timing.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_orcjit import ExecutionSession

LIBRARY = ("math_ops.cc", "static_init.cc", "string_ops.cc", "tensor_ops.cc")
WARM_UP = 50
CYCLES = 300
BOUND_KIB = 8 * 1024
"""Generous next to the benchmark's 2 MiB; one leaked library would be over 160 KiB per load."""

pytestmark = pytest.mark.skipif(
    os.environ.get("ORCJIT_SANITIZED") == "1",
    reason="under ASan (.ci/sanitize) freed memory waits in a quarantine: RSS tells no leaks",
)


def rss_kib() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def growth(cycle: Callable[[], None]) -> int:
    for _ in range(WARM_UP):
        cycle()
    start = rss_kib()
    for _ in range(CYCLES):
        cycle()
    return rss_kib() - start


def test_load_call_drop_cycles(session: ExecutionSession, kernels) -> None:
    objects = [str(kernels.object(source)) for source in LIBRARY]

    def cycle() -> None:
        module = session.load_module(objects)
        assert module.test_add(1, 2) == 3
        del module

    assert growth(cycle) < BOUND_KIB


def _bad_inputs(kernels, tmp: Path) -> dict[str, list[str | bytes]]:
    math_ops = kernels.object("math_ops.cc")
    truncated = math_ops.read_bytes()[: math_ops.stat().st_size // 2]
    (tmp / "truncated.o").write_bytes(truncated)
    (tmp / "text.o").write_bytes(b"just some text\n" * 20)
    return {
        "missing": [str(tmp / "no_such_kernel.o")],
        "directory": [str(tmp)],
        "text": [str(tmp / "text.o")],
        "truncated": [str(tmp / "truncated.o")],
        "truncated_bytes": [truncated],
        "undefined_symbol": [str(kernels.object("undefined_symbol.cc"))],
        "duplicate_symbol": [str(math_ops), str(kernels.object("duplicate_symbol.cc"))],
    }


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "directory",
        "text",
        "truncated",
        "truncated_bytes",
        "undefined_symbol",
        "duplicate_symbol",
    ],
)
def test_failing_loads(session: ExecutionSession, kernels, tmp_path: Path, kind: str) -> None:
    objects = _bad_inputs(kernels, tmp_path)[kind]

    def cycle() -> None:
        with pytest.raises((ValueError, RuntimeError, FileNotFoundError)):
            session.load_module(objects)

    assert growth(cycle) < BOUND_KIB
