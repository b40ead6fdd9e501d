"""Building from source explains itself: CMake names what is missing, in one message."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


def configure(build: Path, *definitions: str) -> subprocess.CompletedProcess[str]:
    command = ["cmake", "-S", str(ROOT), "-B", str(build), *definitions]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_missing_llvm_dependency_names_the_debian_package(tmp_path: Path) -> None:
    # As if libzstd-dev were not installed: LLVM's own CMake files then cannot find zstd.
    done = configure(tmp_path, "-DCMAKE_DISABLE_FIND_PACKAGE_zstd=TRUE")
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert "links libraries whose development files are missing" in message
    assert "apt-get install libzstd-dev" in message
    assert "zstd::libzstd_shared but the target was not found" not in message


def test_other_processors_are_refused_with_a_message(tmp_path: Path) -> None:
    done = configure(tmp_path, "-DCMAKE_SYSTEM_NAME=Linux", "-DCMAKE_SYSTEM_PROCESSOR=aarch64")
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert "supports Linux on x86-64 only; this machine is aarch64 (Linux)" in message
