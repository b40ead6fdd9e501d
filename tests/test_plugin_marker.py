"""The orcjit marker: sources, flags, defines, and which tests run forked with what timeout."""

from __future__ import annotations

import pytest
from plugin_helpers import C_ADD, Project, make_project

from pytest_orcjit import settings


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(pytester, monkeypatch)


def test_marker_sources_are_relative_to_the_test_file(project: Project) -> None:
    project.write("kernels/global.c", C_ADD)
    project.write("sub/local/one.c", C_ADD)
    project.write("sub/local/two.c", C_ADD)
    project.write(
        "sub/test_local.py",
        """
import pytest

@pytest.mark.orcjit(sources=["local/*.c"])
def test_marker(orcjit_objects):
    assert len(orcjit_objects) == 2

@pytest.mark.orcjit(sources="local/one.c")
def test_single_string(orcjit_objects):
    assert len(orcjit_objects) == 1

def test_global(orcjit_objects):
    assert len(orcjit_objects) == 1
""",
    )
    project.ini("orcjit_sources = kernels/*.c")
    project.pytester.runpytest().assert_outcomes(passed=3)
    assert project.compiles() == sorted(
        project.rel(p) for p in ("kernels/global.c", "sub/local/one.c", "sub/local/two.c")
    )


def test_closest_marker_wins_per_keyword(project: Project) -> None:
    project.write("k.c", C_ADD)
    project.write(
        "test_layers.py",
        """
import pytest

pytestmark = pytest.mark.orcjit(sources=["k.c"], cflags=["-DMODULE"])

@pytest.mark.orcjit(defines={"N": 4, "FAST": None})
class TestLayers:
    @pytest.mark.orcjit(cflags="-DFUNCTION -O1")
    def test_function(self, orcjit_objects):
        assert len(orcjit_objects) == 1

    def test_class(self, orcjit_objects):
        assert len(orcjit_objects) == 1
""",
    )
    project.ini()
    project.pytester.runpytest().assert_outcomes(passed=2)
    flags = sorted(" ".join(f for f in line.split() if f.startswith(("-D", "-O")))
                   for line in project.compile_runs())  # fmt: skip
    # test_function: its own cflags, the class's defines; test_class: the module's cflags.
    assert flags == ["-DFUNCTION -O1 -DN=4 -DFAST", "-DMODULE -DN=4 -DFAST"]


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('"k.c"', "orcjit: the orcjit marker on test_bad.py::test_bad takes keyword arguments*"),
        ("source=['k.c']", "orcjit: invalid keyword 'source' from marker on *test_bad*"),
        ("sources=['nope/*.c']", "orcjit: marker on *test_bad glob 'nope/*.c' matches no file*"),
        ("defines='N'", "orcjit: invalid defines 'N' from marker on *test_bad: a dict"),
        ("timeout='soon'", "orcjit: invalid timeout 'soon' from marker on *test_bad: seconds >= 0"),
        ("isolation='thread'", "orcjit: invalid isolation 'thread' from marker on *: fork or none"),
    ],
)
def test_invalid_marker_is_the_tests_error(project: Project, marker: str, message: str) -> None:
    project.write("k.c", C_ADD)
    project.write(
        "test_bad.py",
        f"""
import pytest

@pytest.mark.orcjit({marker})
def test_bad():
    pass

def test_other():
    pass
""",
    )
    project.ini()
    result = project.pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_bad*", message])


FAKE_ISOLATION = """
import sys, types
import pytest_orcjit
from _pytest.runner import runtestprotocol

def run_forked(item, nextitem, timeout, generation, warning_filters, *warm_key_fallback):
    print(f"\\nFORKED {item.name} timeout={timeout}")
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    runtestprotocol(item, nextitem=nextitem)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return {}

fake = types.ModuleType("pytest_orcjit.isolation")
fake.run_forked = run_forked
fake.shutdown = lambda config: None
sys.modules["pytest_orcjit.isolation"] = fake
pytest_orcjit.isolation = fake
"""

ROUTED = """
import pytest

def test_fixture(orcjit_compile):
    pass

def test_plain():
    pass

@pytest.mark.orcjit(isolation="fork", timeout=5)
def test_plain_forced_fork():
    pass

@pytest.mark.orcjit(isolation="none")
def test_fixture_forced_inprocess(orcjit_compile):
    pass

@pytest.mark.orcjit(timeout=0)
def test_marker_only():
    pass
"""


@pytest.mark.parametrize(
    ("args", "ini", "forked"),
    [
        ([], [], ["test_fixture timeout=None", "test_plain_forced_fork timeout=5.0",
                  "test_marker_only timeout=None"]),
        (["--orcjit-timeout=3"], [], ["test_fixture timeout=3.0",
                                      "test_plain_forced_fork timeout=5.0",
                                      "test_marker_only timeout=None"]),
        ([], ["orcjit_timeout = 2.5"], ["test_fixture timeout=2.5",
                                        "test_plain_forced_fork timeout=5.0",
                                        "test_marker_only timeout=None"]),
        (["--orcjit-isolation=none"], [], ["test_plain_forced_fork timeout=5.0"]),
        ([], ["orcjit_isolation = none"], ["test_plain_forced_fork timeout=5.0"]),
        (["--orcjit-isolation=fork"], ["orcjit_isolation = none"],
         ["test_fixture timeout=None", "test_plain_forced_fork timeout=5.0",
          "test_marker_only timeout=None"]),
    ],
    ids=["default", "cli-timeout", "ini-timeout", "cli-none", "ini-none", "cli-over-ini"],
)  # fmt: skip
def test_which_tests_run_forked(
    project: Project, args: list[str], ini: list[str], forked: list[str]
) -> None:
    project.write("conftest.py", FAKE_ISOLATION)
    project.write("test_routed.py", ROUTED)
    project.ini(*ini, isolation=None)
    result = project.pytester.runpytest_subprocess("-s", *args)
    result.assert_outcomes(passed=5)
    lines = [line for line in result.stdout.lines if line.startswith("FORKED ")]
    assert lines == [f"FORKED {name}" for name in forked]


def test_marker_keywords_are_documented() -> None:
    for key in settings.MARKER_KEYS:
        assert f"{key}=" in settings.MARKER_HELP
