"""example_project's CI workflow: valid, and its test command works as written.

``example_project/.github/workflows/kernels.yml`` is a template kernel authors
copy. This test parses it, checks the steps a kernel repository relies on, and
runs its test command in a copy of example_project, where it must pass and
write the JUnit report that the workflow uploads.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

EXAMPLE = Path(__file__).parent.parent / "example_project"
WORKFLOW = EXAMPLE / ".github" / "workflows" / "kernels.yml"


def steps() -> list[dict[str, object]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    return list(job["steps"])


def step(name: str) -> dict[str, object]:
    (found,) = [s for s in steps() if s.get("name") == name]
    return found


def test_workflow_installs_caches_and_uploads() -> None:
    used = [str(s["uses"]).split("@")[0] for s in steps() if "uses" in s]
    assert used == ["actions/checkout", "actions/setup-python", "actions/cache",
                    "actions/upload-artifact"]  # fmt: skip
    assert shlex.split(str(step("Install")["run"]))[-3:] == ["pytest-orcjit", "numpy",
                                                             "pytest-xdist"]  # fmt: skip
    cache = step("Restore compiled kernels")["with"]
    assert isinstance(cache, dict)
    assert cache["path"] == ".pytest_cache/d/orcjit"  # where the plugin caches objects
    assert "hashFiles('kernels/**'" in cache["key"]
    upload = step("Upload the report")
    assert upload["if"] == "always()"
    assert isinstance(upload["with"], dict)
    assert upload["with"]["path"] in str(step("Test")["run"])


def test_workflow_test_command_passes_and_writes_the_report(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".pytest_cache"))
    command = shlex.split(str(step("Test")["run"]))
    assert command[0] == "pytest"
    ran = subprocess.run([sys.executable, "-m", *command], cwd=project, capture_output=True,
                         text=True)  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    report = ElementTree.parse(project / "report.xml").getroot()
    suite = report if report.tag == "testsuite" else report.find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", 0)) > 0
    assert int(suite.get("failures", 0)) == 0 and int(suite.get("errors", 0)) == 0
    assert (project / ".pytest_cache" / "d" / "orcjit").is_dir()  # what the workflow caches
