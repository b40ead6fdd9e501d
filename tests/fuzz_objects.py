"""Mutation fuzzing of the object loader: malformed objects must never crash the process.

Each mutant of a real C++ object (bytes flipped in the ELF header, the section
table, the symbol and relocation tables; truncations; 32-bit fields set to
extremes) is added to a fresh library and linked in a forked child. The child
exits 0 when the mutant linked, 1 when it raised a Python exception; anything
else (a signal, a hang) is a crash of the loader. ``tests/test_fuzz.py`` runs a
few hundred mutants per test run; run this file for a long campaign:

    python tests/fuzz_objects.py --mutants 5000 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import select
import signal
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

EXTREMES_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
EXTREMES_64 = (0, 1, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF)
SHT_SYMTAB, SHT_RELA = 2, 4
CHILD_TIMEOUT = 20.0


@dataclass(frozen=True)
class Mutant:
    kind: str
    data: bytes


@dataclass(frozen=True)
class Outcome:
    kind: str
    result: str  # "linked", "rejected", "crashed: <signal>", "hung"
    detail: str = ""


class ElfLayout:
    """Where the tables of a (well-formed) ELF64 object are, to aim mutations at them."""

    def __init__(self, data: bytes) -> None:
        self.shoff = struct.unpack_from("<Q", data, 0x28)[0]
        self.shentsize, self.shnum = struct.unpack_from("<HH", data, 0x3A)
        self.sections = []
        for index in range(self.shnum):
            header = struct.unpack_from("<IIQQQQIIQQ", data, self.shoff + index * self.shentsize)
            self.sections.append(header)

    def section_header(self, index: int) -> int:
        return self.shoff + index * self.shentsize

    def tables(self, sh_type: int) -> list[tuple[int, int, int]]:
        """(offset, size, entry size) of the sections of a type."""
        return [(s[4], s[5], s[9]) for s in self.sections if s[1] == sh_type and s[9]]


def mutants(data: bytes, count: int, seed: int) -> Iterator[Mutant]:
    """``count`` mutants of ``data``, the same ones for the same seed."""
    rng = random.Random(seed)
    layout = ElfLayout(data)
    strategies = [
        _flip_header,
        _flip_section_table,
        _extreme_section_field,
        _corrupt_table_entry(SHT_SYMTAB, "symbol"),
        _corrupt_table_entry(SHT_RELA, "relocation"),
        _truncate,
        _extreme_32_anywhere_in_tables,
    ]
    for _ in range(count):
        strategy = rng.choice(strategies)
        kind, mutated = strategy(rng, bytearray(data), layout)
        yield Mutant(kind, bytes(mutated))


def _flip_header(rng: random.Random, data: bytearray, layout: ElfLayout) -> tuple[str, bytearray]:
    for _ in range(rng.randint(1, 3)):
        data[rng.randrange(64)] ^= 1 << rng.randrange(8)
    return "header", data


def _flip_section_table(
    rng: random.Random, data: bytearray, layout: ElfLayout
) -> tuple[str, bytearray]:
    start = layout.section_header(rng.randrange(layout.shnum))
    for _ in range(rng.randint(1, 4)):
        data[start + rng.randrange(layout.shentsize)] ^= 1 << rng.randrange(8)
    return "section-table", data


def _extreme_section_field(
    rng: random.Random, data: bytearray, layout: ElfLayout
) -> tuple[str, bytearray]:
    start = layout.section_header(rng.randrange(layout.shnum))
    # name, type, flags, addr, offset, size, link, info, addralign, entsize
    fields = [(0, 4), (4, 4), (8, 8), (24, 8), (32, 8), (40, 4), (44, 4), (48, 8), (56, 8)]
    offset, width = rng.choice(fields)
    value = rng.choice(EXTREMES_32 if width == 4 else (*EXTREMES_64, len(data), len(data) + 8))
    data[start + offset : start + offset + width] = (value % (1 << (8 * width))).to_bytes(
        width, "little"
    )
    return "section-field", data


def _corrupt_table_entry(sh_type: int, name: str):
    def corrupt(rng: random.Random, data: bytearray, layout: ElfLayout) -> tuple[str, bytearray]:
        tables = layout.tables(sh_type)
        if not tables:
            return _flip_section_table(rng, data, layout)
        offset, size, entsize = rng.choice(tables)
        entry = offset + rng.randrange(max(1, size // entsize)) * entsize
        if rng.random() < 0.5:
            field = entry + 4 * rng.randrange(entsize // 4)
            value = rng.choice((*EXTREMES_32, rng.getrandbits(32)))
            data[field : field + 4] = value.to_bytes(4, "little")
        else:
            for _ in range(rng.randint(1, 3)):
                data[entry + rng.randrange(entsize)] ^= 1 << rng.randrange(8)
        return name, data

    return corrupt


def _truncate(rng: random.Random, data: bytearray, layout: ElfLayout) -> tuple[str, bytearray]:
    return "truncation", data[: rng.randrange(len(data))]


def _extreme_32_anywhere_in_tables(
    rng: random.Random, data: bytearray, layout: ElfLayout
) -> tuple[str, bytearray]:
    regions = [(0, 64), (layout.shoff, layout.shnum * layout.shentsize)]
    regions += [(offset, size) for offset, size, _ in layout.tables(SHT_SYMTAB)]
    regions += [(offset, size) for offset, size, _ in layout.tables(SHT_RELA)]
    start, size = rng.choice(regions)
    field = start + 4 * rng.randrange(max(1, size // 4))
    data[field : field + 4] = rng.choice(EXTREMES_32).to_bytes(4, "little")
    return "extreme-32", data


def run_mutant(session: object, mutant: Mutant, export: str, close: bool = False) -> Outcome:
    """Add and link ``mutant`` in a forked child; report how the child ended.

    With ``close``, a library that linked is closed too, which runs its static destructors.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: add, link, report one line, exit without cleanup
        os.close(read_end)
        status, detail = 0, "linked"
        try:
            lib = session.create_library("fuzz")  # type: ignore[attr-defined]
            lib.add(mutant.data)
            lib.get_function(export)
            if close:
                lib.close()
        except Exception as err:  # a clean exception is a correct outcome
            status, detail = 1, f"{type(err).__name__}: {str(err)[:200]}"
        os.write(write_end, detail.encode(errors="replace"))
        os._exit(status)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + CHILD_TIMEOUT
    while True:
        ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            return Outcome(mutant.kind, "hung")
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    detail = b"".join(chunks).decode(errors="replace")
    if os.WIFSIGNALED(status):
        return Outcome(mutant.kind, f"crashed: {signal.Signals(os.WTERMSIG(status)).name}")
    code = os.WEXITSTATUS(status)
    result = {0: "linked", 1: "rejected"}.get(code, f"crashed: exit status {code}")
    return Outcome(mutant.kind, result, detail)


def campaign(
    object_path: Path, count: int, seed: int, export: str, close: bool = False
) -> list[Outcome]:
    from pytest_orcjit import create_session
    from pytest_orcjit.api import prepare_fork

    session = create_session()
    prepare_fork()
    data = object_path.read_bytes()
    return [run_mutant(session, mutant, export, close) for mutant in mutants(data, count, seed)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--object", type=Path, help="object to mutate (default: math_ops.cc)")
    parser.add_argument("--save", type=Path, help="write each mutant that crashed or hung here")
    parser.add_argument(
        "--close", action="store_true", help="close each library that linked (runs destructors)"
    )
    args = parser.parse_args()
    object_path = args.object
    if object_path is None:
        sys.path.insert(0, str(Path(__file__).parent))
        import tempfile

        from conftest import KernelBuilder

        object_path = KernelBuilder(Path(tempfile.mkdtemp())).object("math_ops.cc")
    started = time.monotonic()
    outcomes = campaign(object_path, args.mutants, args.seed, "test_add", args.close)
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        data = object_path.read_bytes()
        for index, (mutant, outcome) in enumerate(
            zip(mutants(data, args.mutants, args.seed), outcomes, strict=True)
        ):
            if outcome.result.startswith(("crashed", "hung")):
                name = f"seed{args.seed}-{index}-{outcome.kind}-{outcome.result.split()[-1]}.o"
                (args.save / name).write_bytes(mutant.data)
    counts = collections.Counter((outcome.kind, outcome.result) for outcome in outcomes)
    print(
        f"{len(outcomes)} mutants of {object_path.name}, seed {args.seed}, "
        f"{time.monotonic() - started:.1f} s"
    )
    for (kind, result), number in sorted(counts.items()):
        print(f"  {kind:15} {result:25} {number:6}")
    crashed = [o for o in outcomes if o.result.startswith(("crashed", "hung"))]
    print(f"crashed or hung: {len(crashed)}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
