"""pytest's own features seen through the fork boundary: capture, skip/xfail, warnings, -x,
--maxfail, junitxml, --lf, xdist, pytest.exit, subtests and --setup-show behave as in-process.

Every test runs pytest in a subprocess (``runpytest_subprocess``): forking inside an
in-process pytester would fork the outer run too.
"""

from __future__ import annotations

import re
import signal
import xml.etree.ElementTree as ET

import pytest
from isolation_helpers import (
    crash_line,
    failed_line,
    make_tests,
    wide_terminal,  # noqa: F401 (autouse: short summary lines in full)
)

from pytest_orcjit.crash_reports import (
    CRASH_MESSAGE,
)


def test_output_capture_skip_xfail_params_tmp_path_warnings(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import sys, warnings

        def test_capsys(capsys):
            print("to capsys")
            assert capsys.readouterr().out == "to capsys\\n"

        def test_capfd(capfd):
            sys.stdout.write("to capfd\\n")
            assert capfd.readouterr().out == "to capfd\\n"

        def test_fails_with_output():
            print("shown on failure")
            print("also stderr", file=sys.stderr)
            assert 1 == 2

        @pytest.mark.skip(reason="skipped in the child")
        def test_skip():
            pass

        @pytest.mark.skipif(True, reason="skipif in the child")
        def test_skipif():
            pass

        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert False

        @pytest.mark.xfail(strict=True)
        def test_xpass_strict():
            pass

        @pytest.mark.parametrize("n", [1, 2], ids=["one", "two"])
        def test_param(n, tmp_path):
            (tmp_path / "f").write_text(str(n))
            assert (tmp_path / "f").read_text() == str(n)

        def test_warns():
            warnings.warn("from the child", UserWarning)
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=5, failed=2, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_with_output _*",
            "E       assert 1 == 2",
            "*- Captured stdout call -*",
            "shown on failure",
            "*- Captured stderr call -*",
            "also stderr",
            "*warnings summary*",
            "test_forked.py::test_warns",
            "*UserWarning: from the child",
            "PASSED *test_param[[]one[]]",
            "PASSED *test_param[[]two[]]",
            "SKIPPED * skipped in the child",
            "SKIPPED * skipif in the child",
            "XFAIL *test_xfail - known",
            "FAILED *test_fails_with_output - assert 1 == 2",
            "FAILED *test_xpass_strict*",
        ]
    )
    # -s: the child writes straight to the terminal, stdout and stderr alike.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "-k", "output")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*shown on failure*"])
    result.stderr.fnmatch_lines(["also stderr"])


def test_exitfirst_maxfail_junitxml_and_last_failed(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import os

        def test_passes():
            pass

        def test_crashes():
            os.kill(os.getpid(), 11)

        def test_fails():
            assert False

        def test_passes_too():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-x")
    # -x stops after the first crash, fed by the report logged in the parent.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    result = pytester.runpytest_subprocess("--maxfail=2", "--junitxml=report.xml")
    result.assert_outcomes(passed=1, failed=2)
    cases = {
        case.get("name", ""): case
        for case in ET.parse(pytester.path / "report.xml").iter("testcase")
    }
    assert sorted(cases) == ["test_crashes", "test_fails", "test_passes"]
    failure = cases["test_crashes"].find("failure")
    assert failure is not None
    assert CRASH_MESSAGE.format(name="SIGSEGV", description="Segmentation fault") in (
        failure.get("message") or ""
    )
    # --lf: the cache plugin saw the crash as a failure.
    result = pytester.runpytest_subprocess("--lf", "-v")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*run-last-failure: rerun previous 2 failures*"])


def test_xdist(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    make_tests(
        pytester,
        """
        import os, warnings

        @pytest.mark.parametrize("n", range(6))
        def test_passes(n):
            warnings.warn(f"warning {n}")

        @pytest.mark.parametrize("n", range(2))
        def test_crashes(n):
            os.abort()
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=6, failed=2)
    result.stdout.fnmatch_lines(["*warnings summary*", "*UserWarning: warning ?"])
    result.stdout.fnmatch_lines([failed_line("test_crashes?[01]?", crash_line(signal.SIGABRT))] * 2)


def test_pytest_exit_and_large_reports(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        def test_large_output():
            print("x" * 1_000_000)  # far beyond a pipe's buffer
            assert False

        def test_exits():
            pytest.exit("stop here", returncode=7)

        def test_never_runs():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*Exit: stop here*"])
    assert result.ret == 7
    result.stdout.fnmatch_lines(["*1 failed*"])
    result.stdout.no_fnmatch_line("*1 passed*")


def test_each_report_is_logged_once_in_the_pytest_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_order="""
        import pytest

        def test_in_process():
            pass

        @pytest.mark.orcjit(isolation="fork")
        @pytest.mark.parametrize("n", range(3))
        def test_forked(n):
            pass
        """
    )
    # The in-process test logs first: the hook children log to is then one pytest looked up.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    lines = [line for line in result.outlines if line.startswith("test_order.py::")]
    assert [re.sub(r"\s+\[\s*\d+%\]$", "", line) for line in lines] == [
        "test_order.py::test_in_process PASSED",
        "test_order.py::test_forked[0] PASSED",
        "test_order.py::test_forked[1] PASSED",
        "test_order.py::test_forked[2] PASSED",
    ]


def test_subtests_are_reported_as_in_process(pytester: pytest.Pytester) -> None:
    pytest.importorskip("_pytest.subtests", reason="subtests are built into pytest 9")
    make_tests(
        pytester,
        """
        import os

        def test_subtests(subtests):
            for n in range(3):
                with subtests.test(msg=f"case {n}"):
                    assert n != 1

        def test_crash_after_a_subtest(subtests):
            with subtests.test(msg="before the crash"):
                pass
            os.abort()
        """,
    )

    def run(*args: str) -> tuple[list[str], dict[str, int]]:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *args)
        lines = [
            re.sub(r"\s+\[\s*\d+%\]$", "", line)  # the progress column
            for line in result.outlines
            if line.startswith("test_forked.py::test_subtests ")
        ]
        return lines, result.parseoutcomes()

    in_process = run("-k", "test_subtests", "--orcjit-isolation=none")
    assert in_process == (
        [
            "test_forked.py::test_subtests SUBPASSED[case 0]",
            "test_forked.py::test_subtests SUBFAILED[case 1]",
            "test_forked.py::test_subtests SUBPASSED[case 2]",
            "test_forked.py::test_subtests FAILED",
        ],
        {"failed": 2, "subtests": 2, "deselected": 1},
    )
    # Each subtest crosses as its own report, logged once; the test fails for its failed subtest.
    assert run("-k", "test_subtests") == in_process
    pytest.importorskip("xdist")
    outcomes = run("-k", "test_subtests", "-n", "2")[1]
    assert (outcomes["failed"], outcomes["subtests"]) == (2, 2)
    # A crash after a subtest fails the call, not the teardown.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "-k", "crash")
    result.stdout.fnmatch_lines(
        [
            "*::test_crash_after_a_subtest SUBPASSED?before the crash?*",
            "*::test_crash_after_a_subtest FAILED*",
            "*_ test_crash_after_a_subtest _*",
            crash_line(signal.SIGABRT),
        ]
    )
    result.stdout.fnmatch_lines(["*1 failed, 1 deselected, 1 subtests passed*"])


def test_each_forked_test_gets_its_own_warning_filters(pytester: pytest.Pytester) -> None:
    # Children come from one fork server, itself forked inside the first test's warning
    # context: the second test must not inherit the first one's "error" filter.
    make_tests(
        pytester,
        """
        import warnings

        @pytest.mark.filterwarnings("error::UserWarning")
        def test_strict():
            with pytest.raises(UserWarning):
                warnings.warn("raised here")

        def test_lenient():
            warnings.warn("only recorded here")

        @pytest.mark.filterwarnings("ignore::UserWarning")
        def test_ignores():
            warnings.warn("not shown")
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_lenient*", "*UserWarning: only recorded here"])
    result.stdout.no_fnmatch_line("*not shown*")


def test_setup_show_keeps_every_result_line(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        @pytest.mark.parametrize("n", range(3))
        def test_uses_the_session(orcjit_session, n):
            pass
        """,
    )
    # --setup-show resumes pytest's capture after each line it shows, in the pytest process too.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "--setup-show")
    result.assert_outcomes(passed=3)
    assert result.stdout.str().count("SETUP    S orcjit_session") == 1
    assert result.stdout.str().count("PASSED") == 3
