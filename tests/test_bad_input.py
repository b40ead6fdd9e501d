"""Bad input: a Python exception that names the problem, and the session stays usable.

Each case checks the exception type and the key words of its message (the
path or "<bytes>", the symbol, the function, the library), then loads and
calls a good object in the same session.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from fuzz_objects import SHT_RELA, ElfLayout

from pytest_orcjit import ExecutionSession
from pytest_orcjit.api import warm_objects


@pytest.fixture
def session(session: ExecutionSession, kernels):
    """The conftest session, checked to still load and call a good object after the test."""
    yield session
    module = session.load_module(kernels.read("math_ops.cc"))
    assert module.test_add(2, 3) == 5


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def truncated(kernels, tmp_path: Path) -> Path:
    data = kernels.read("math_ops.cc")
    return write(tmp_path, "truncated.o", data[: len(data) // 2])


def elf_magic_then_noise(kernels, tmp_path: Path) -> Path:
    noise = random.Random(20).randbytes(4096)
    return write(tmp_path, "noise.o", b"\x7fELF" + noise)


def overlapping_relocations(kernels, tmp_path: Path) -> Path:
    """Relocation 1 of the first relocation section moved onto relocation 0's field."""
    data = bytearray(kernels.read("math_ops.cc"))
    offset, _, _ = ElfLayout(bytes(data)).tables(SHT_RELA)[0]
    data[offset + 24 : offset + 32] = data[offset : offset + 8]  # r_offset of entry 1 := entry 0's
    return write(tmp_path, "overlapping.o", bytes(data))


# (id, make the input from (kernels, tmp_path), what the message says besides the name)
BAD_FILES: list[tuple[str, Callable[..., Path], str]] = [
    ("directory", lambda kernels, tmp: tmp, "directory"),
    ("empty", lambda kernels, tmp: write(tmp, "empty.o", b""), "is empty"),
    ("text", lambda kernels, tmp: write(tmp, "notes.o", b"just some text\n" * 20), "not an ELF"),
    ("truncated", truncated, "truncated or corrupt"),
    ("elf_magic_then_noise", elf_magic_then_noise, ""),
    ("overlapping_relocations", overlapping_relocations, "relocation 0 .* both patch byte"),
    ("shared_library", lambda kernels, tmp: kernels.shared_library("math_ops.cc"), "shared lib"),
    (
        "aarch64",
        lambda kernels, tmp: kernels.object(
            "aarch64.c", "--target=aarch64-linux-gnu", compiler="clang-22"
        ),
        "(?i)aarch64",
    ),
]


each_bad_file = pytest.mark.parametrize(
    ("make", "says"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES]
)


def test_missing_path(session: ExecutionSession, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_kernel.o"
    lib = session.create_library()
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        lib.add(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        session.load_module(str(missing))


@each_bad_file
def test_bad_file(session: ExecutionSession, kernels, tmp_path: Path, make, says: str) -> None:
    path = make(kernels, tmp_path)
    lib = session.create_library("victim")
    with pytest.raises(ValueError, match=re.escape(str(path))) as raised:
        lib.add(path)
    assert re.search(says, str(raised.value)), str(raised.value)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        session.load_module([kernels.object("math_ops.cc"), path])
    # The library is as it was before the bad add.
    lib.add(kernels.object("math_ops.cc"))
    assert lib.get_function("test_mul")(3, 5) == 15


@each_bad_file
def test_bad_bytes(session: ExecutionSession, kernels, tmp_path: Path, make, says: str) -> None:
    path = make(kernels, tmp_path)
    if path.is_dir():
        pytest.skip("a directory has no bytes")
    lib = session.create_library()
    with pytest.raises(ValueError, match="<bytes>") as raised:
        lib.add(path.read_bytes())
    assert re.search(says, str(raised.value)), str(raised.value)


def test_elf_magic_then_noise_many_seeds(session: ExecutionSession) -> None:
    """Whatever bytes follow the magic, the message is readable text naming the input."""
    for seed in range(100):
        noise = random.Random(seed).randbytes(300)
        with pytest.raises(ValueError, match="<bytes>") as raised:
            session.create_library().add(b"\x7fELF" + noise)
        # UnicodeDecodeError is a ValueError too: raw input bytes leaked into the message.
        assert type(raised.value) is ValueError, f"seed {seed}: {raised.value!r}"


def test_duplicate_symbol_in_one_library(session: ExecutionSession, kernels) -> None:
    lib = session.create_library("twice")
    lib.add(kernels.object("math_ops.cc"))
    second = kernels.object("duplicate_symbol.cc")  # defines test_add again
    with pytest.raises(ValueError, match=r"duplicate symbol.*'test_add'") as raised:
        lib.add(second)
    assert str(second) in str(raised.value)
    assert "twice" in str(raised.value)
    with pytest.raises(ValueError, match=r"duplicate symbol: '<bytes>'.*'test_\w+'"):
        lib.add(kernels.read("math_ops.cc"))  # the very same object again
    assert lib.get_function("test_add")(1, 2) == 3  # the first definition stays
    with pytest.raises(AttributeError, match="test_only_in_duplicate"):
        lib.get_function("test_only_in_duplicate")  # nothing of the rejected object was added
    with pytest.raises(ValueError, match=r"duplicate symbol.*'test_add'"):
        session.load_module([kernels.read("math_ops.cc"), kernels.read("duplicate_symbol.cc")])


def test_undefined_symbol(session: ExecutionSession, kernels) -> None:
    lib = session.create_library("needs_more")
    lib.add(kernels.object("undefined_symbol.cc"))
    with pytest.raises(RuntimeError, match="orcjit_test_undefined_function") as raised:
        lib.get_function("test_call_undefined")
    assert "needs_more" in str(raised.value)
    with pytest.raises(RuntimeError, match="orcjit_test_undefined_function"):
        session.load_module(kernels.read("undefined_symbol.cc"))


def test_warm_objects_raises_as_a_load_does(session: ExecutionSession, kernels, tmp_path) -> None:
    missing = tmp_path / "no_such_kernel.o"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        warm_objects(session, [kernels.object("math_ops.cc"), missing])
    with pytest.raises(RuntimeError, match="undefined symbol"):
        warm_objects(session, [kernels.object("undefined_symbol.cc")])


def test_missing_function(session: ExecutionSession, kernels) -> None:
    lib = session.create_library("math_library")
    lib.add(kernels.object("math_ops.cc"))
    with pytest.raises(AttributeError, match="test_divide") as raised:
        lib.get_function("test_divide")
    assert "math_library" in str(raised.value)
    with pytest.raises(AttributeError, match="test_divide"):
        lib.test_divide  # noqa: B018
    empty = session.create_library("empty_library")
    with pytest.raises(AttributeError, match="empty_library"):
        empty.get_function("test_add")


def test_corrupted_objects_never_crash_the_process(kernels) -> None:
    """Random byte flips anywhere in a real object: each add raises or loads, none crashes.

    Runs in a child process, so that a crash fails this test instead of ending the run.
    """
    code = textwrap.dedent(
        f"""
        import random
        from pytest_orcjit import create_session

        data = open({str(kernels.object("math_ops.cc"))!r}, "rb").read()
        rng = random.Random(7)
        session = create_session()
        outcomes = {{}}
        for round in range(300):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            lib = session.create_library()
            try:
                lib.add(bytes(mutated))
                lib.get_function("test_add")
                outcome = "loaded"
            except (ValueError, RuntimeError, AttributeError) as error:
                outcome = type(error).__name__
            lib.close()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        good = session.create_library()
        good.add(data)
        assert good.get_function("test_add")(1, 2) == 3
        print(outcomes)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
