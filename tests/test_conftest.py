"""The test suite's own setup (tests/conftest.py): a missing compiler stops the session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MSG_NO_COMPILER, REQUIRED_COMPILERS

TESTS = Path(__file__).parent


@pytest.mark.parametrize("missing", ["clang++-22", "g++"])
def test_a_missing_compiler_stops_the_session_saying_how_to_install_it(
    tmp_path: Path, missing: str
) -> None:
    # A PATH of links to every required compiler but one (and to nothing else).
    for compiler in REQUIRED_COMPILERS:
        found = shutil.which(compiler)
        if compiler != missing and found is not None:
            (tmp_path / compiler).symlink_to(found)
    env = {**os.environ, "PATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--co", "test_symbols.py"],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    message = MSG_NO_COMPILER.format(compiler=missing, install=REQUIRED_COMPILERS[missing])
    assert f"ERROR: {message}" in result.stderr
    assert "collected" not in result.stdout  # stopped before collecting a test
