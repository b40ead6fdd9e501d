"""Learned imports: a module from outside the rootdir that a forked test imports is imported
once into the pytest process, so that later tests' children start with it imported
(pytest_orcjit.learned_imports). The modules tests import here live in a folder on PYTHONPATH,
outside the rootdir, as installed packages do.

Every test runs pytest in a subprocess (``runpytest_subprocess``): forking inside an
in-process pytester would fork the outer run too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from isolation_helpers import LOG_EVENT, make_tests, run_logging_events, wide_terminal  # noqa: F401

from pytest_orcjit.learned_imports import MSG_THREADS

LOGS_ITS_IMPORT = 'import conftest\nconftest.log("import {name}")\n'


@pytest.fixture(autouse=True)
def site(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A folder on PYTHONPATH, outside the rootdir, holding modules that log their import."""
    pytester.makeconftest(LOG_EVENT + 'log("conftest")\n')
    site = tmp_path_factory.mktemp("site")
    for name in ("lazy", "later"):
        (site / f"{name}.py").write_text(LOGS_ITS_IMPORT.format(name=name))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return site


def pids(events: list[list[str]], name: str) -> list[str]:
    return [pid for event, pid in events if event == name]


IMPORTING_TESTS = """
import conftest

@pytest.mark.parametrize("n", range(3))
def test_imports(n):
    conftest.log("test")
    import lazy
"""


def test_a_module_forked_tests_import_is_imported_once_into_the_pytest_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tests(pytester, IMPORTING_TESTS)
    result, events = run_logging_events(pytester, monkeypatch, "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    tests, (pytest_process,) = pids(events, "test"), pids(events, "conftest")
    assert len(set(tests)) == 3 and pytest_process not in tests
    # The first test's child imports it, then a throwaway child of the pytest process (which
    # tries whether importing it starts a thread), then the pytest process; later tests find it.
    first, tried, learned = pids(events, "import lazy")
    assert first == tests[0] and learned == pytest_process
    assert tried not in (*tests, pytest_process)


def test_learning_imports_can_be_turned_off(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tests(pytester, IMPORTING_TESTS)
    result, events = run_logging_events(
        pytester, monkeypatch, "-p", "no:randomly", "-o", "orcjit_learn_imports=false"
    )
    result.assert_outcomes(passed=3)
    assert pids(events, "import lazy") == pids(events, "test")


def test_a_module_of_the_project_is_left_to_each_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under the rootdir: a test may count on importing its project's modules afresh.
    pytester.makepyfile(own=LOGS_ITS_IMPORT.format(name="own"))
    make_tests(pytester, IMPORTING_TESTS.replace("import lazy", "import own"))
    result, events = run_logging_events(pytester, monkeypatch, "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert pids(events, "import own") == pids(events, "test")


def test_a_module_the_pytest_process_finds_elsewhere_is_left_to_each_test(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Found through a folder only the tests put on sys.path: from the pytest process the
    # name is found in another folder, and importing it there would import another module.
    hidden = tmp_path_factory.mktemp("hidden")
    (hidden / "lazy.py").write_text(LOGS_ITS_IMPORT.format(name="hidden"))
    make_tests(
        pytester,
        f"""
        import sys
        import conftest

        @pytest.mark.parametrize("n", range(3))
        def test_imports(n):
            conftest.log("test")
            sys.path.insert(0, {str(hidden)!r})
            import lazy
        """,
    )
    result, events = run_logging_events(pytester, monkeypatch, "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert pids(events, "import hidden") == pids(events, "test")
    assert pids(events, "import lazy") == []


def test_a_module_whose_import_starts_a_thread_is_left_out_and_learning_stops(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, site: Path
) -> None:
    (site / "threaded.py").write_text(
        LOGS_ITS_IMPORT.format(name="threaded")
        + "import threading, time\n"
        + "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
    )
    make_tests(
        pytester,
        """
        import conftest

        def test_threaded():
            import threaded

        @pytest.mark.parametrize("n", range(2))
        def test_later(n):
            conftest.log("test")
            import later
        """,
    )
    result, events = run_logging_events(pytester, monkeypatch, "-p", "no:randomly")
    result.assert_outcomes(passed=3, warnings=1)
    result.stdout.fnmatch_lines(["*" + MSG_THREADS.format(name="threaded")[:120] + "*"])
    # Tried in a throwaway child of the pytest process, never imported by the pytest process.
    (pytest_process,) = pids(events, "conftest")
    assert len(pids(events, "import threaded")) == 2
    assert pytest_process not in pids(events, "import threaded")
    assert pids(events, "import later") == pids(events, "test")


def test_the_next_run_imports_what_this_one_learned_before_its_first_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tests(pytester, IMPORTING_TESTS)
    log = pytester.path / "events.log"
    monkeypatch.setenv("EVENT_LOG", str(log))
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=3)
    log.unlink()
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=3)
    events = [line.rsplit(maxsplit=1) for line in log.read_text().splitlines()]
    (pytest_process,) = pids(events, "conftest")
    tried, learned = pids(events, "import lazy")
    assert learned == pytest_process and tried not in pids(events, "test")
    names = [event for event, _ in events]
    assert names.index("import lazy") < names.index("test")
