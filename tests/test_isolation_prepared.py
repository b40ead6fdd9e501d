"""The fork server's prepared library: forked tests start from their objects linked and
constructed once in the server, yet each test has its own fresh copy of the library's state.

Every test runs pytest in a subprocess (``runpytest_subprocess``): forking inside an
in-process pytester would fork the outer run too.
"""

from __future__ import annotations

import pytest
from isolation_helpers import run_logging_events, wide_terminal  # noqa: F401 (autouse)
from plugin_helpers import Project, core_available, make_project

from pytest_orcjit.validators import MSG_INVALID

pytestmark = pytest.mark.skipif(not core_available(), reason="the native core is not built")

KERNEL = """\
#include <tvm/ffi/function.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace {
void Log(const char* event) {
  if (const char* path = std::getenv("EVENT_LOG")) {
    if (FILE* file = std::fopen(path, "a")) {
      std::fprintf(file, "%s %d\\n", event, static_cast<int>(getpid()));
      std::fclose(file);
    }
  }
}
struct Global {
  Global() : value(41) { Log("construct"); }
  ~Global() { Log("destruct"); }
  int64_t value;
};
Global g_global;
int64_t g_counter = 0;
thread_local int64_t t_counter = 0;
}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(bump_counter, []() { return ++g_counter; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(bump_global, []() { return ++g_global.value; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(bump_thread_local, []() { return ++t_counter; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(which, []() -> int64_t { return WHICH; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(crash, []() { volatile int* p = nullptr; return *p; });
"""

LOG_TEST = """
import os

def log(event):
    with open(os.environ["EVENT_LOG"], "a") as f:
        f.write(f"{event} {os.getpid()}\\n")
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(pytester, monkeypatch)
    project.write("kernels/ops.cc", KERNEL.replace("WHICH", "1"))
    project.write("kernels/other.cc", KERNEL.replace("WHICH", "2"))
    project.ini("orcjit_sources = kernels/ops.cc", isolation="fork")  # prelinked: the default
    return project


def events_of(events: list[list[str]], name: str) -> list[str]:
    """The pids that logged the event ``name``, in order."""
    return [pid for event, pid in events if event == name]


def test_each_test_starts_from_the_library_constructed_once_in_the_fork_server(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(
        "test_state.py",
        LOG_TEST
        + """
import pytest

@pytest.mark.parametrize("n", range(3))
def test_state(orcjit_lib, n):
    log("test")
    # Static, constructed and thread_local state: as fresh as in a library linked here.
    assert orcjit_lib.bump_counter() == 1
    assert orcjit_lib.bump_global() == 42
    assert orcjit_lib.bump_thread_local() == 1
    log(f"parent {os.getppid()}")
""",
    )
    result, events = run_logging_events(project.pytester, monkeypatch)
    result.assert_outcomes(passed=3)
    tests = events_of(events, "test")
    assert len(set(tests)) == 3
    # Constructed once, in the fork server that forked every test; destroyed in each test.
    servers = {event.split()[1] for event, _ in events if event.startswith("parent")}
    assert events_of(events, "construct") == list(servers)
    assert events_of(events, "destruct") == tests


def test_the_library_names_the_test_in_its_name_and_errors(project: Project) -> None:
    project.write(
        "test_names.py",
        """
def test_name(orcjit_lib):
    assert orcjit_lib.name == "test_names.py::test_name"

def test_missing(orcjit_lib):
    orcjit_lib.missing()
""",
    )
    result = project.pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*library 'test_names.py::test_missing' has no function*"])


@pytest.mark.parametrize(
    ("marker", "args"),
    [("@pytest.mark.orcjit(own_load=True)", ()), ("", ("--no-orcjit-prelink",))],
    ids=["marker", "option"],
)
def test_own_load_constructs_the_library_in_the_test(
    project: Project, monkeypatch: pytest.MonkeyPatch, marker: str, args: tuple[str, ...]
) -> None:
    project.write(
        "test_own.py",
        LOG_TEST
        + f"""
import pytest

{marker}
@pytest.mark.parametrize("n", range(2))
def test_own(orcjit_lib, n):
    log("test")
    assert orcjit_lib.bump_global() == 42
""",
    )
    result, events = run_logging_events(project.pytester, monkeypatch, *args)
    result.assert_outcomes(passed=2)
    tests = events_of(events, "test")
    assert events_of(events, "construct") == tests
    assert events_of(events, "destruct") == tests


def test_an_invalid_own_load_fails_the_test(project: Project) -> None:
    project.write(
        "test_bad.py",
        """
import pytest

@pytest.mark.orcjit(own_load="yes")
def test_bad(orcjit_lib):
    pass
""",
    )
    result = project.pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    expected = MSG_INVALID.format(
        what="own_load", value="yes", origin="marker on test_bad.py::test_bad", expected="*"
    )
    result.stdout.fnmatch_lines([f"*{expected}*"])


def test_alternating_sets_of_objects_each_keep_their_server(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(
        "test_sets.py",
        LOG_TEST
        + """
import pytest

other = pytest.mark.orcjit(sources=["kernels/other.cc"])

@pytest.mark.parametrize("n", range(2))
def test_ops(orcjit_lib, n):
    assert orcjit_lib.which() == 1 and orcjit_lib.bump_counter() == 1
    log(f"ops {os.getppid()}")

@other
@pytest.mark.parametrize("n", range(2))
def test_other(orcjit_lib, n):
    assert orcjit_lib.which() == 2 and orcjit_lib.bump_counter() == 1
    log(f"other {os.getppid()}")
""",
    )
    # Run them alternating: ops, other, ops, other.
    ids = ["test_ops[0]", "test_other[0]", "test_ops[1]", "test_other[1]"]
    result, events = run_logging_events(
        project.pytester, monkeypatch, "-p", "no:randomly", *[f"test_sets.py::{i}" for i in ids]
    )
    result.assert_outcomes(passed=4)
    lines = [event for event, _ in events if event.startswith(("ops", "other"))]
    assert [line.split()[0] for line in lines] == ["ops", "other", "ops", "other"]
    ops = {line.split()[1] for line in lines if line.startswith("ops")}
    others = {line.split()[1] for line in lines if line.startswith("other")}
    assert len(ops) == 1 and len(others) == 1 and ops != others  # one server each, kept
    assert len(events_of(events, "construct")) == 2  # once per set


def test_tests_that_make_libraries_or_compile_link_their_own(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(
        "test_own.py",
        LOG_TEST
        + """
def test_links_against_another(orcjit_session, orcjit_objects, orcjit_lib):
    log("test")
    other = orcjit_session.create_library("other")
    other.add(orcjit_objects[0])
    orcjit_lib.link_against(other)  # only before orcjit_lib links
    assert orcjit_lib.bump_global() == 42 and other.bump_global() == 42

def test_compiles(orcjit_lib, orcjit_compile):
    log("test")
    assert orcjit_lib.bump_global() == 42
""",
    )
    result, events = run_logging_events(project.pytester, monkeypatch)
    result.assert_outcomes(passed=2)
    first, second = events_of(events, "test")
    assert events_of(events, "construct") == [first, first, second]


def test_a_crash_leaves_the_server_serving_the_next_test(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(
        "test_crash.py",
        LOG_TEST
        + """
def test_crash(orcjit_lib):
    log(f"server {os.getppid()}")
    orcjit_lib.crash()

def test_after(orcjit_lib):
    log(f"server {os.getppid()}")
    assert orcjit_lib.bump_counter() == 1
""",
    )
    result, events = run_logging_events(project.pytester, monkeypatch, "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    servers = [event for event, _ in events if event.startswith("server")]
    assert len(servers) == 2 and servers[0] == servers[1]
    assert len(events_of(events, "construct")) == 1


def test_a_constructor_that_exits_fails_each_test_as_it_did(project: Project) -> None:
    # Preparing the library kills its fork server: that set then links in each test's child,
    # where the constructor's exit fails the test as it would have without a prepared library.
    project.write(
        "kernels/leaves.c",
        "#include <stdlib.h>\n__attribute__((constructor)) static void leave(void) { exit(3); }\n",
    )
    project.write(
        "test_leaves.py",
        """
import pytest

leaves = pytest.mark.orcjit(sources=["kernels/leaves.c", "kernels/ops.cc"])

@leaves
def test_leaves(orcjit_lib):
    orcjit_lib.which()

@leaves
def test_leaves_again(orcjit_lib):
    orcjit_lib.which()

def test_ops(orcjit_lib):
    assert orcjit_lib.bump_counter() == 1
""",
    )
    result = project.pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            f"FAILED *test_leaves{name} - *exited with status 3 before reporting"
            for name in ("", "_again")
        ]
    )
