"""The shape of the package next to apache-tvm-ffi-orcjit's: one default session, named types,
and a package whose lazily imported names help() and dir() show."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import pytest_orcjit
from pytest_orcjit import ExecutionSession, default_session
from pytest_orcjit._ffi_api import session_load_module  # type: ignore[attr-defined]


def run_python(code: str) -> str:
    """Run ``code`` in a fresh Python process; its stdout."""
    command = [sys.executable, "-c", textwrap.dedent(code)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_default_session_is_one_object() -> None:
    assert default_session() is default_session()
    assert isinstance(default_session(), ExecutionSession)


def test_concurrent_first_calls_get_one_object() -> None:
    out = run_python(
        """
        import threading
        from pytest_orcjit import default_session

        barrier = threading.Barrier(16)
        seen = []

        def call():
            barrier.wait()
            seen.append(default_session())

        threads = [threading.Thread(target=call) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(len(seen), len({id(session) for session in seen}), seen[0] is default_session())
        """
    )
    assert out.split() == ["16", "1", "True"]


def test_native_load_module_names_what_an_object_is() -> None:
    session = pytest_orcjit.create_session()
    with pytest.raises(TypeError, match=r"a path \(str or os.PathLike\) or object-file bytes"):
        session_load_module(session, [42], "")
    session.close()


def test_help_shows_the_lazy_names_with_their_docstrings() -> None:
    for name in pytest_orcjit.__all__:
        assert name in dir(pytest_orcjit)
    out = run_python(
        """
        import pydoc, sys
        import pytest_orcjit, pytest_orcjit.plugin
        names = dir(pytest_orcjit)
        print("core loaded by the plugin and dir():", "pytest_orcjit._ffi_api" in sys.modules)
        print(pydoc.render_doc(pytest_orcjit, renderer=pydoc.plaintext))
        """
    )
    assert "core loaded by the plugin and dir(): False" in out
    for name in pytest_orcjit.__all__:
        first_line = getattr(pytest_orcjit, name).__doc__.strip().splitlines()[0]
        assert name in out and first_line in out, name
