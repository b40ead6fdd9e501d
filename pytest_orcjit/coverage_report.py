"""The end of a coverage run: merge the tests' profiles and report them.

Reads what the run left in its coverage directory (see
:mod:`pytest_orcjit.coverage`): ``*.profraw`` counters, ``*.open`` claims of
tests whose counters were lost, ``*.test`` names of the tests and
``objects-*.txt`` lists of the instrumented objects. Merges the counters with
``llvm-profdata merge``, exports them with ``llvm-cov export -format=lcov``,
keeps the sources under the rootdir, and derives every report from those lcov
records, so that the terminal table and the lcov file always agree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .coverage_runtime import Tools, run_tool


@dataclass
class FileCoverage:
    """One source file's lines: line number -> execution count."""

    path: str
    lines: dict[int, int] = field(default_factory=dict)

    @property
    def statements(self) -> int:
        return len(self.lines)

    @property
    def missed(self) -> list[int]:
        return sorted(line for line, count in self.lines.items() if count == 0)

    @property
    def percent(self) -> float:
        if not self.lines:
            return 100.0
        return 100.0 * (self.statements - len(self.missed)) / self.statements


def parse_lcov(text: str) -> dict[str, FileCoverage]:
    """The line counts of an lcov trace, by source path (records of one file summed)."""
    files: dict[str, FileCoverage] = {}
    current: FileCoverage | None = None
    for line in text.splitlines():
        if line.startswith("SF:"):
            path = line[3:]
            current = files.setdefault(path, FileCoverage(path))
        elif line.startswith("DA:") and current is not None:
            number, count = line[3:].split(",")[:2]
            current.lines[int(number)] = current.lines.get(int(number), 0) + int(count)
        elif line == "end_of_record":
            current = None
    return files


def keep_records(text: str, keep: Iterable[str]) -> str:
    """The lcov trace ``text`` with only the records of the source paths in ``keep``."""
    wanted, out, record = set(keep), [], []
    for line in text.splitlines():
        record.append(line)
        if line == "end_of_record":
            if record[0].startswith("SF:") and record[0][3:] in wanted:
                out.extend(record)
            record = []
    return "".join(f"{line}\n" for line in out)


def ranges(lines: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    parts: list[str] = []
    start = previous = None
    for line in [*lines, None]:
        if start is not None and line is not None and previous is not None and line == previous + 1:
            previous = line
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = line
    return ", ".join(parts)


@dataclass
class Result:
    """A run's merged coverage: the kept files, the filtered lcov trace, the lost tests."""

    files: dict[str, FileCoverage]
    lcov: str
    lost: list[str]
    profile: Path | None
    objects: list[str]

    @property
    def total(self) -> float:
        statements = sum(f.statements for f in self.files.values())
        missed = sum(len(f.missed) for f in self.files.values())
        return 100.0 if statements == 0 else 100.0 * (statements - missed) / statements


def tests_of(directory: Path) -> dict[str, str]:
    """The node id of each test stem that ran under coverage."""
    return {path.stem: path.read_text() for path in directory.glob("*.test")}


def objects_of(directory: Path) -> list[str]:
    listed = (p.read_text().splitlines() for p in directory.glob("objects-*.txt"))
    return [
        path
        for path in dict.fromkeys(line for lines in listed for line in lines)
        if path and os.path.isfile(path)
    ]


def stem_of(path: Path) -> str:
    """``<dir>/<test>.<N>.profraw`` -> ``<test>``."""
    return path.name.split(".", 1)[0]


def object_args(objects: list[str]) -> list[str]:
    return [objects[0], *(arg for obj in objects[1:] for arg in ("-object", obj))]


def export_lcov(tools: Tools, profile: Path, objects: list[str]) -> str:
    return run_tool(
        [tools.cov, "export", "-format=lcov", "-instr-profile", str(profile), *object_args(objects)]
    )


def merge(tools: Tools, profiles: list[Path], output: Path) -> None:
    listing = output.with_suffix(".inputs")
    listing.write_text("".join(f"{p}\n" for p in profiles))
    run_tool([tools.profdata, "merge", "-sparse", "-f", str(listing), "-o", str(output)])


def collect(directory: Path, tools: Tools, keep_source: Callable[[str], bool]) -> Result:
    """Merge and export the run's counters; ``keep_source(path)`` says which files to report."""
    tests = tests_of(directory)
    lost_stems = sorted({stem_of(path) for path in directory.glob("*.open")})
    lost = [tests.get(stem, stem) for stem in lost_stems]
    objects = objects_of(directory)
    profiles = sorted(directory.glob("*.profraw"))
    if not profiles or not objects:
        return Result({}, "", lost, None, objects)
    profile = directory / "merged.profdata"
    merge(tools, profiles, profile)
    trace = export_lcov(tools, profile, objects)
    files = {path: cov for path, cov in parse_lcov(trace).items() if keep_source(path)}
    return Result(files, keep_records(trace, files), lost, profile, objects)


def contexts(directory: Path, tools: Tools, result: Result) -> dict[str, dict[str, list[str]]]:
    """Which tests ran each line: ``{file: {line: [node ids]}}`` (one merge per test)."""
    tests = tests_of(directory)
    by_test: dict[str, list[Path]] = {}
    for raw in sorted(directory.glob("*.profraw")):
        by_test.setdefault(stem_of(raw), []).append(raw)
    found: dict[str, dict[str, list[str]]] = {}
    for stem, profiles in sorted(by_test.items()):
        profile = directory / f"{stem}.profdata"
        merge(tools, profiles, profile)
        for path, cov in parse_lcov(export_lcov(tools, profile, result.objects)).items():
            if path not in result.files:
                continue
            for line, count in sorted(cov.lines.items()):
                if count:
                    found.setdefault(path, {}).setdefault(str(line), []).append(
                        tests.get(stem, stem)
                    )
    return found


def write_reports(
    result: Result, reports: list[tuple[str, Path]], directory: Path, tools: Tools
) -> list[str]:
    """Write the lcov/html/json reports; return a line per report written."""
    written: list[str] = []
    for kind, target in reports:
        if result.profile is None:
            break
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "lcov":
            target.write_text(result.lcov)
        elif kind == "html":
            run_tool(
                [
                    tools.cov,
                    "show",
                    "-format=html",
                    f"-output-dir={target}",
                    "-instr-profile",
                    str(result.profile),
                    *object_args(result.objects),
                    *sorted(result.files),
                ]
            )
        elif kind == "json":
            exported = json.loads(
                run_tool(
                    [
                        tools.cov,
                        "export",
                        "-format=text",
                        "-instr-profile",
                        str(result.profile),
                        *object_args(result.objects),
                        *sorted(result.files),
                    ]
                )
            )
            exported["orcjit"] = {
                "contexts": contexts(directory, tools, result),
                "lost": result.lost,
            }
            target.write_text(json.dumps(exported))
        written.append(f"{kind}: {target}")
    return written


def table(result: Result, root: Path) -> list[str]:
    """pytest-cov's terminal table: ``Name  Stmts  Miss  Cover  Missing``."""
    rows = []
    for path in sorted(result.files):
        cov = result.files[path]
        name = os.path.relpath(path, root) if path.startswith(str(root) + os.sep) else path
        rows.append(
            (name, cov.statements, len(cov.missed), f"{cov.percent:.0f}%", ranges(cov.missed))
        )
    statements = sum(row[1] for row in rows)
    missed = sum(row[2] for row in rows)
    total = ("TOTAL", statements, missed, f"{result.total:.0f}%", "")
    width = max([len(row[0]) for row in rows] + [len("Name"), len("TOTAL")])
    lines = [f"{'Name':<{width}}  {'Stmts':>6}  {'Miss':>6}  {'Cover':>6}   Missing"]
    lines.append("-" * len(lines[0]))
    for name, stmts, miss, cover, missing in [*rows, total]:
        if name == "TOTAL":
            lines.append("-" * len(lines[0]))
        lines.append(f"{name:<{width}}  {stmts:>6}  {miss:>6}  {cover:>6}   {missing}".rstrip())
    return lines
