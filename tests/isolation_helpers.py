"""What the isolation tests (tests/test_isolation_*.py) share: forked test files, the lines
of the reports they expect, and an event log that tells which process did what."""

from __future__ import annotations

import signal
import textwrap

import pytest

from pytest_orcjit.crash_reports import CRASH_MESSAGE

FORK = 'pytestmark = pytest.mark.orcjit(isolation="fork")\n'


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short summary lines in full, whatever the terminal of the outer run."""
    monkeypatch.setenv("COLUMNS", "200")


def crash_line(signum: signal.Signals) -> str:
    return CRASH_MESSAGE.format(name=signum.name, description=signal.strsignal(signum))


def failed_line(test: str, message: str) -> str:
    """The short-summary line of a failed test (pytest 8 prefixes the message with 'Failed: ')."""
    return f"FAILED *{test} - *{message}"


def make_tests(pytester: pytest.Pytester, body: str, name: str = "test_forked") -> None:
    pytester.makepyfile(**{name: "import pytest\n" + FORK + textwrap.dedent(body)})


LOG_EVENT = """\
import os

def log(event):
    with open(os.environ["EVENT_LOG"], "a") as f:
        f.write(f"{event} {os.getpid()}\\n")
"""
"""Conftest code: ``log(event)`` writes "event pid" lines to the file in EVENT_LOG."""


def run_logging_events(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[pytest.RunResult, list[list[str]]]:
    """Run pytest in a subprocess with EVENT_LOG set: its result, and the [event, pid] logged."""
    log = pytester.path / "events.log"
    monkeypatch.setenv("EVENT_LOG", str(log))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    events = [line.rsplit(maxsplit=1) for line in log.read_text().splitlines()]
    return result, events
