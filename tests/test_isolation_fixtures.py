"""Fixtures across the fork boundary: what a forked test sets up, shares with the pytest
process and tears down, and what it inherits from it.

Every test runs pytest in a subprocess (``runpytest_subprocess``): forking inside an
in-process pytester would fork the outer run too.
"""

from __future__ import annotations

import os
import textwrap

import pytest
from isolation_helpers import (
    LOG_EVENT,
    make_tests,
    run_logging_events,
    wide_terminal,  # noqa: F401 (autouse: short summary lines in full)
)


def test_wider_scoped_fixtures_set_up_per_forked_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(
        """
        import os, pytest

        def log(event):
            with open(os.environ["FIXTURE_LOG"], "a") as f:
                f.write(event + "\\n")

        @pytest.fixture(scope="session")
        def session_list():
            log("setup session")
            yield []
            log("teardown session")

        @pytest.fixture(scope="module")
        def module_list():
            log("setup module")
            yield []
            log("teardown module")
        """
    )
    body = """
        @pytest.mark.orcjit(isolation="none")
        def test_in_parent(module_list):
            module_list.append("parent")

        def test_a(session_list, module_list):
            session_list.append("a")
            module_list.append("a")
            assert module_list == ["parent", "a"]

        def test_b(session_list, module_list):
            assert session_list == []  # test_a's change stayed in test_a's child
            assert module_list == ["parent"]

        class TestClass:
            @pytest.fixture(scope="class")
            def class_list(self):
                return []

            def test_c(self, class_list):
                class_list.append("c")

            def test_d(self, class_list):
                assert class_list == []
        """
    make_tests(pytester, body, name="test_one")
    make_tests(
        pytester, "def test_e(module_list):\n    assert module_list == []\n", name="test_two"
    )
    log = pytester.path / "fixtures.log"
    monkeypatch.setenv("FIXTURE_LOG", str(log))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    result.stdout.no_fnmatch_line("*torn down properly*")
    assert log.read_text().splitlines() == [
        "setup module",  # test_in_parent, in the parent; test_a and test_b share it
        "setup session",  # test_a's child
        "teardown session",
        "setup session",  # test_b's child
        "teardown session",
        "teardown module",  # the parent's, once, when test_one.py ends
        "setup module",  # test_e's child
        "teardown module",
    ]


OVERRIDE_ORCJIT_SESSION = """
@pytest.fixture
def orcjit_session():
    from pytest_orcjit import create_session

    with create_session() as session:
        yield session
"""


@pytest.mark.parametrize("override", [False, True], ids=["plugin", "conftest_override"])
def test_orcjit_session_is_set_up_once_in_the_pytest_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, override: bool
) -> None:
    conftest = """
        import pytest

        def pytest_sessionstart():
            log("pytest")

        @pytest.hookimpl(wrapper=True)
        def pytest_fixture_setup(fixturedef):
            log(f"setup {fixturedef.argname}")
            return (yield)

        def pytest_fixture_post_finalizer(fixturedef):
            if fixturedef.cached_result is not None:
                log(f"teardown {fixturedef.argname}")
        """
    override_fixture = OVERRIDE_ORCJIT_SESSION if override else ""
    pytester.makeconftest(LOG_EVENT + textwrap.dedent(conftest) + override_fixture)
    make_tests(
        pytester,
        """
        @pytest.mark.parametrize("n", range(3))
        def test_uses_the_session(orcjit_session, n):
            assert orcjit_session.create_library().name
        """,
    )
    result, events = run_logging_events(pytester, monkeypatch)
    result.assert_outcomes(passed=3, warnings=0)  # pytest 9.1 warns of fixtures set up off-stack
    pytest_pid = events[0][1]
    setups = [pid for event, pid in events if event == "setup orcjit_session"]
    if override:  # a conftest's fixture, function-scoped here: each child sets up its own
        assert len(setups) == 3
        assert pytest_pid not in setups
    else:  # set up before the first fork, inherited by every child, torn down once at the end
        assert [event for event in events if "orcjit_session" in event[0]] == [
            ["setup orcjit_session", pytest_pid],
            ["teardown orcjit_session", pytest_pid],
        ]


@pytest.mark.parametrize("own_load", [False, True])
def test_static_constructors_run_once_per_fork_server_destructors_in_each_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, own_load: bool
) -> None:
    # The fork server links the test's library and runs its constructors once before its first
    # fork; each child closes its copy, running the destructors. With own_load=True the server
    # links the objects without running their code, and each child links and constructs its own.
    pytester.makeini("[pytest]\norcjit_sources = kernels/*.c\norcjit_prelink = true\n")
    pytester.mkdir("kernels")
    pytester.path.joinpath("kernels", "logged.c").write_text(
        textwrap.dedent(
            """\
            #include <stdio.h>
            #include <stdlib.h>
            #include <unistd.h>
            #include <tvm/ffi/c_api.h>

            static void log_event(const char* event) {
              FILE* log = fopen(getenv("EVENT_LOG"), "a");
              fprintf(log, "%s %d\\n", event, (int)getpid());
              fclose(log);
            }
            __attribute__((constructor)) static void constructed(void) { log_event("ctor"); }
            __attribute__((destructor)) static void destroyed(void) { log_event("dtor"); }

            int __tvm_ffi_pid(void* self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result) {
              result->type_index = kTVMFFIInt;
              result->zero_padding = 0;
              result->v_int64 = getpid();
              return 0;
            }
            """
        )
    )
    pytester.makepyfile(
        test_kernels="""
        import os, pytest

        @pytest.mark.orcjit(own_load=OWN_LOAD)
        @pytest.mark.parametrize("n", range(3))
        def test_in_a_child(orcjit_lib, n):
            with open(os.environ["EVENT_LOG"], "a") as log:
                log.write(f"test {orcjit_lib.pid()}\\n")
        """.replace("OWN_LOAD", str(own_load))
    )
    result, events = run_logging_events(pytester, monkeypatch)
    result.assert_outcomes(passed=3)
    tests = [pid for event, pid in events if event == "test"]
    assert len(set(tests)) == 3
    each = ["ctor", "test", "dtor"] if own_load else ["test", "dtor"]
    for test in tests:
        assert [event for event, pid in events if pid == test] == each
    servers = [pid for event, pid in events if event == "ctor" and pid not in tests]
    assert len(servers) == (0 if own_load else 1)
    assert len(events) == 9 - 2 * len(servers)  # nothing ran anywhere else


def test_parent_teardown_output_is_captured_in_the_last_forked_test(
    pytester: pytest.Pytester,
) -> None:
    make_tests(
        pytester,
        """
        @pytest.fixture(scope="module")
        def held_by_parent():
            yield
            print("module teardown output")

        @pytest.mark.orcjit(isolation="none")
        def test_in_parent(held_by_parent):
            pass

        def test_forked_last(held_by_parent):
            assert False
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    # As without the fork: a section of the report, not a line on the terminal.
    result.stdout.fnmatch_lines(["*- Captured stdout teardown -*", "module teardown output"])
    result.stdout.no_fnmatch_line(".Fmodule teardown output")


def test_parent_teardown_error_is_the_last_forked_tests_error(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        @pytest.fixture(scope="module")
        def held_by_parent():
            yield
            raise RuntimeError("module teardown failed")

        @pytest.mark.orcjit(isolation="none")
        def test_in_parent(held_by_parent):
            pass

        def test_forked_last(held_by_parent):
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # As without the fork: the module's teardown runs once, after its last test.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_forked_last*", "E       RuntimeError: module teardown failed"]
    )


def test_forked_tests_see_the_parent_as_it_is_when_they_start(pytester: pytest.Pytester) -> None:
    # An in-process test changes what later forked tests inherit; a forked test's changes
    # stay in its child, and the next forked test starts from the pytest process again.
    make_tests(
        pytester,
        """
        import os

        STATE = []

        @pytest.mark.orcjit(isolation="none")
        def test_in_process_first():  # the module stays set up in the pytest process
            pass

        def test_forked_first():
            STATE.append("forked")

        def test_forked_sees_nothing_of_the_first():
            assert STATE == []

        @pytest.mark.orcjit(isolation="none")
        def test_in_process():
            STATE.append("in-process")

        def test_forked_after():
            assert STATE == ["in-process"]
            STATE.append("forked")

        def test_forked_last():
            assert STATE == ["in-process"]
            with open("server.pid", "w") as f:
                f.write(str(os.getppid()))
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    # The fork server (the forked tests' parent) is gone once the run is over.
    server = int((pytester.path / "server.pid").read_text())
    assert server > 1
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)
