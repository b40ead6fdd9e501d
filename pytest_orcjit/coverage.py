"""Kernel coverage (``--orcjit-coverage``): which lines of the C/C++ kernels the tests ran.

Registered by the plugin only when coverage is on. Kernels are compiled with
clang's source-based coverage and carry their own profile runtime
(:mod:`pytest_orcjit.coverage_runtime`); each test's objects write their
counters when its library closes, in a forked child too, into the run's
coverage directory (``.pytest_cache/d/orcjit-coverage``) under the test's
name. At the end of the session, in the pytest process that controls the run
(after pytest-xdist's workers), :mod:`pytest_orcjit.coverage_report` merges
and reports them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from . import coverage_report
from .compiler import Builder
from .coverage_runtime import ENV_FILE, Instrumenter

HELP_COVERAGE = (
    "measure which lines of the C/C++ kernels the tests run (clang source-based coverage; "
    "kernels are compiled and cached apart) and report them at the end"
)
HELP_REPORT = (
    "kernel coverage reports besides the terminal table: lcov:PATH, html:DIR or json:PATH "
    "(repeatable; implies --orcjit-coverage)"
)
HELP_FAIL_UNDER = "fail the run (exit code 1) if the total kernel line coverage is below N percent"

MSG_BAD_REPORT = (
    "orcjit: invalid coverage report {value!r} from {origin}: write lcov:PATH, html:DIR "
    "or json:PATH"
)
MSG_BAD_FAIL_UNDER = (
    "orcjit: invalid coverage threshold {value!r} from {origin}: a number from 0 to 100"
)
MSG_TITLE = "orcjit kernel coverage"
MSG_NO_DATA = (
    "orcjit coverage: no kernel counters were written (no test closed a library of objects "
    "compiled for coverage)"
)
MSG_LOST = (
    "orcjit coverage: the counters of {count} test(s) were lost (the test crashed or timed out "
    "before its library closed): {tests}"
)
MSG_FAIL_UNDER = (
    "orcjit coverage: FAIL Required kernel line coverage of {limit}% not reached: "
    "total {total:.2f}%"
)
MSG_FAILED = "orcjit coverage: cannot report: {error}"
KINDS = ("lcov", "html", "json")
_WORKER_KEY = "orcjit_coverage_dir"


def addoptions(parser: pytest.Parser) -> None:
    """``--orcjit-coverage``, ``--orcjit-coverage-report``, ``--orcjit-coverage-fail-under``."""
    group = parser.getgroup("orcjit")
    group.addoption(
        "--orcjit-coverage",
        dest="orcjit_coverage",
        action="store_true",
        default=None,
        help=HELP_COVERAGE,
    )
    parser.addini("orcjit_coverage", HELP_COVERAGE, type="bool", default=False)
    group.addoption(
        "--orcjit-coverage-report",
        dest="orcjit_coverage_report",
        action="append",
        metavar="KIND:PATH",
        help=HELP_REPORT,
    )
    parser.addini("orcjit_coverage_report", HELP_REPORT, type="linelist", default=[])
    group.addoption(
        "--orcjit-coverage-fail-under",
        dest="orcjit_coverage_fail_under",
        metavar="N",
        help=HELP_FAIL_UNDER,
    )
    parser.addini("orcjit_coverage_fail_under", HELP_FAIL_UNDER, default=None)


@dataclass(frozen=True)
class CoverageSettings:
    enabled: bool
    reports: tuple[tuple[str, Path], ...]
    fail_under: float | None


def coverage_settings(config: pytest.Config) -> CoverageSettings:
    """Command line > ini; raise pytest.UsageError naming where a bad value came from."""
    reports: list[tuple[str, Path]] = []
    given = config.getoption("orcjit_coverage_report")
    origin = "--orcjit-coverage-report" if given else "ini orcjit_coverage_report"
    for value in given or config.getini("orcjit_coverage_report"):
        kind, sep, path = str(value).partition(":")
        if not sep or kind not in KINDS or not path:
            raise pytest.UsageError(MSG_BAD_REPORT.format(value=value, origin=origin))
        reports.append((kind, config.rootpath / Path(path).expanduser()))
    fail_under: float | None = None
    value = config.getoption("orcjit_coverage_fail_under")
    origin = "--orcjit-coverage-fail-under"
    if value is None:
        value, origin = (
            config.getini("orcjit_coverage_fail_under"),
            "ini orcjit_coverage_fail_under",
        )
    if value not in (None, ""):
        try:
            fail_under = float(value)
        except ValueError:
            fail_under = -1.0
        if not 0 <= fail_under <= 100:
            raise pytest.UsageError(MSG_BAD_FAIL_UNDER.format(value=value, origin=origin))
    enabled = config.getoption("orcjit_coverage") or config.getini("orcjit_coverage")
    enabled = bool(enabled or reports or fail_under is not None)
    return CoverageSettings(enabled, tuple(reports), fail_under)


def configure(config: pytest.Config, builder: Callable[[], Builder]) -> None:
    """Turn coverage on for the run if asked: instrument the builder, register the hooks."""
    chosen = coverage_settings(config)
    if not chosen.enabled:
        return
    made = builder()
    try:
        instrumenter = Instrumenter(made)
    except (ValueError, RuntimeError) as err:
        raise pytest.UsageError(str(err)) from None
    plugin = CoveragePlugin(config, chosen, instrumenter, made.cache.root)
    made.on_object = lambda obj: plugin.record_object(instrumenter.mapping_of(obj))
    config.pluginmanager.register(plugin, "orcjit-coverage")


def _run_directory(config: pytest.Config) -> Path:
    """The coverage directory of this run, emptied: made by the controller, shared by workers."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _WORKER_KEY in workerinput:
        return Path(workerinput[_WORKER_KEY])
    cache = getattr(config, "cache", None)
    if cache is not None:
        directory = Path(cache.mkdir("orcjit-coverage"))
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        return directory
    # -p no:cacheprovider: a directory of the run's own, removed at its end (CoveragePlugin).
    return Path(tempfile.mkdtemp(prefix="pytest-orcjit-coverage-"))


class CoveragePlugin:
    """The hooks of a coverage run (registered as ``orcjit-coverage``)."""

    def __init__(
        self, config: pytest.Config, chosen: CoverageSettings, tools: Instrumenter, cache: Path
    ) -> None:
        """``cache``: the object cache, whose sources (orcjit_compile's texts) are not reported."""
        self.config, self.settings, self.tools = config, chosen, tools.tools
        self.directory = _run_directory(config)
        self.cache = cache
        self.controller = not hasattr(config, "workerinput")
        self.result: coverage_report.Result | None = None
        self.written: list[str] = []
        self.error: str | None = None
        self.previous = os.environ.get(ENV_FILE)

    def record_object(self, path: Path) -> None:
        """Note an object's coverage mapping for the report (each process appends to its list)."""
        if not path.is_file():
            return  # an object of the cache whose mapping is gone: not reported
        listing = self.directory / f"objects-{os.getpid()}.txt"
        with open(listing, "a") as out:
            out.write(f"{path}\n")

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """pytest-xdist: workers write into the controller's directory."""
        node.workerinput[_WORKER_KEY] = str(self.directory)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Name the counters of the libraries that close from now on after this test."""
        stem = hashlib.sha1(item.nodeid.encode()).hexdigest()[:16]
        (self.directory / f"{stem}.test").write_text(item.nodeid)
        os.environ[ENV_FILE] = str(self.directory / stem)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.controller:
            return
        root = self.config.rootpath
        cache = str(self.cache)

        def keep(path: str) -> bool:
            return path.startswith(str(root) + os.sep) and not path.startswith(cache + os.sep)

        try:
            self.result = coverage_report.collect(self.directory, self.tools, keep)
            self.written = coverage_report.write_reports(
                self.result, list(self.settings.reports), self.directory, self.tools
            )
        except (OSError, RuntimeError) as err:
            self.error = str(err)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        limit = self.settings.fail_under
        if limit is not None and self.result.total < limit and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.controller:
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("-", MSG_TITLE)
        if self.error is not None:
            write(MSG_FAILED.format(error=self.error), red=True)
            return
        result = self.result
        if result is None:
            return
        if result.profile is None:
            write(MSG_NO_DATA)
        else:
            for line in coverage_report.table(result, self.config.rootpath):
                write(line)
            for line in self.written:
                write(f"orcjit coverage report written: {line}")
        if result.lost:
            write(MSG_LOST.format(count=len(result.lost), tests=", ".join(result.lost)), red=True)
        limit = self.settings.fail_under
        if limit is not None and result.total < limit:
            write(MSG_FAIL_UNDER.format(limit=f"{limit:g}", total=result.total), red=True)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.controller and getattr(config, "cache", None) is None:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self.previous is None:
            os.environ.pop(ENV_FILE, None)
        else:
            os.environ[ENV_FILE] = self.previous
