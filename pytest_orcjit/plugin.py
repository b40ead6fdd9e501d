"""The pytest plugin: compile kernel sources once, give each test a fresh JIT library.

Loaded through the ``pytest11`` entry point ``orcjit`` (``-p no:orcjit`` turns
it off). Options and their precedence live in :mod:`pytest_orcjit.settings`,
compiling and caching in :mod:`pytest_orcjit.compiler` and
:mod:`pytest_orcjit.cache`, the fork boundary in :mod:`pytest_orcjit.isolation`.

The run goes: configure (resolve settings; check the compiler if sources are
configured) -> collection finish (compile every source the selected tests need,
in parallel, thread pool shut down) -> per test, in the parent: create the
session, then fork the test if its isolation is ``fork`` -> summary.

Importing this module does not load the native core: ``pytest_orcjit.api`` is
imported inside the hooks and fixtures that need the JIT.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from . import error_sources, kernel_libraries, settings
from .cache import CacheWarning
from .compiler import (
    CUDA_SUFFIXES,
    Builder,
    CompileError,
    Compiler,
    CompilerNotFound,
    CudaToolchain,
    Outcome,
    Stats,
    Unit,
    find_cc,
    find_cxx,
    tvm_ffi_version,
)
from .settings import ItemSettings, SessionSettings

if TYPE_CHECKING:
    from .api import ExecutionSession, Library

MSG_NO_COMPILER = (
    "orcjit: cannot use the {kind} compiler {command!r} (from {origin}): {reason}; "
    "choose one with {flag} (ini {ini})"
)
MSG_COMPILE_FAILED = "orcjit: {source} failed to compile:\n{diagnostics}"
MSG_HEADER = "orcjit: {compiler}, LLVM {llvm}, tvm-ffi {tvm_ffi}, {sources} orcjit_sources"
MSG_HEADER_NO_COMPILER = "compiler chosen on first compile"
MSG_SUMMARY = (
    "orcjit: compiled {compiled}, reused {reused} from cache{failed}, "
    "compile wall time {seconds:.2f}s"
)
MSG_NO_CORE = "unavailable ({error}: native core not loaded)"
MSG_COMPILE_FAILED_AGAIN = (
    "orcjit: {source} failed to compile (its diagnostics are in the error of {first})"
)
MSG_NO_SOURCES = (
    "no sources are configured (orcjit_sources is empty and the test has no orcjit marker with "
    "sources=...): set orcjit_sources in the ini file or --orcjit-sources"
)


@dataclass
class State:
    """Per-run state of the plugin (``config.stash[STATE]``)."""

    settings: SessionSettings
    builder: Builder | None = None
    outcomes: dict[Unit, Outcome] = field(default_factory=dict)
    session: ExecutionSession | None = None
    fork_prepared: bool = False
    worker_stats: Stats = field(default_factory=Stats)
    generation: int = 0
    """Changes whenever the pytest process changes what a forked test inherits."""
    warning_filters: list[Any] = field(default_factory=list)
    """The warning filters outside any test, which forked tests start from."""
    forked: bool = False
    pid: int = field(default_factory=os.getpid)
    """The pytest process: a forked test's child has another pid."""
    children_stats: Path | None = None
    """Where forked tests append what their ``orcjit_compile`` calls compiled."""
    temporary_cache: Path | None = None
    """The cache directory made for a run without pytest's cache (removed at its end)."""
    failures_shown: dict[Unit, str] = field(default_factory=dict)
    """The test whose error shows a source's compile diagnostics; the others point to it."""
    sources: dict[Path, Path] = field(default_factory=dict)
    """The source of every object compiled in this run, which errors name (error_sources)."""
    libraries: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)
    """The shared libraries (name, compiler) found in the pytest process, which children inherit."""


STATE = pytest.StashKey[State]()
ITEM = pytest.StashKey["ItemSettings | str"]()
"""An item's resolved settings, or the message of its invalid marker."""


# Hooks, in the order pytest calls them.


def pytest_addoption(parser: pytest.Parser) -> None:
    settings.addoptions(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", settings.MARKER_HELP)
    state = State(settings.session_settings(config))
    config.stash[STATE] = state
    if state.settings.configured:
        builder(config)  # a bad compiler is a usage error before any test runs
    try:
        kernel_libraries.check(state.settings.libs, _cxx_command(config))
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    timeout = settings.pick(config, "timeout")
    if state.settings.timeout and state.settings.isolation == "none":
        isolation = settings.pick(config, "isolation").origin
        message = settings.MSG_TIMEOUT_IN_PROCESS.format(origin=timeout.origin, isolation=isolation)
        config.issue_config_time_warning(pytest.PytestConfigWarning(message), stacklevel=2)


def pytest_report_header(config: pytest.Config) -> str:
    state = config.stash[STATE]
    compiler = MSG_HEADER_NO_COMPILER
    if state.builder is not None:
        compiler = f"{state.builder.cxx.command[0]} ({state.builder.cxx.version})"
    try:
        from .api import llvm_version

        llvm = llvm_version()
    except Exception as err:  # the header never fails a run; the fixtures will say why
        llvm = MSG_NO_CORE.format(error=type(err).__name__)
    return MSG_HEADER.format(
        compiler=compiler, llvm=llvm, tvm_ffi=tvm_ffi_version(), sources=len(state.settings.sources)
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Compile, in parallel, every unit the selected tests need (not to list tests or fixtures)."""
    option = session.config.option
    if option.collectonly or option.showfixtures or option.show_fixtures_per_test:
        return
    units = [unit for item in session.items for unit in units_of(item)]
    if units:
        compile_units(session.config, units)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    session.config.stash[STATE].warning_filters = list(warnings.filters)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run the item in a forked child when its isolation is ``fork``."""
    state = item.config.stash[STATE]
    resolved = item_settings(item)
    if isinstance(resolved, str) or resolved.isolation != "fork":
        state.generation += 1  # whatever it changes here, later forked tests inherit
        return None  # in-process; an invalid marker fails in pytest_runtest_setup
    warm = _prepare_libraries(item, then=_prepare_children(item))
    from . import isolation

    state.forked = True
    if state.children_stats is None:
        fd, name = tempfile.mkstemp(prefix="pytest-orcjit-stats-")
        os.close(fd)
        state.children_stats = Path(name)
    backtraced = isolation.run_forked(
        item, nextitem, resolved.timeout, state.generation, state.warning_filters, warm
    )
    if backtraced:  # so that later children find the symbolizer built
        with contextlib.suppress(Exception):
            prepare_fork(item.config)
    return True


def _prepare_children(item: pytest.Item) -> Callable[[], object] | None:
    """Do here, once, what each forked child of ``item`` would otherwise do again.

    Compiles the item's objects, makes the run's JIT session and sets up the
    plugin's ``orcjit_session`` fixture: children inherit all three. Returns
    what a new fork server is to call before its first fork, linking once the
    objects ``orcjit_lib`` adds (``api.warm_objects``); None if there are none.
    """
    fixtures = getattr(item, "fixturenames", ())
    objects: list[Path] = []
    if "orcjit_objects" in fixtures:
        outcomes = compile_units(item.config, units_of(item))
        for unit, outcome in outcomes.items():
            if outcome.error is not None:
                show_failure(item, unit)  # the child learns which test shows the diagnostics
        objects = [o.object for o in outcomes.values() if o.object is not None]
    if "orcjit_session" not in fixtures:
        return None
    try:
        session = jit_session(item.config)
    except Exception:
        return None  # the child's orcjit_session fixture raises it again, as the test's error
    if _own_fixture(item, "orcjit_session"):  # not a conftest's override
        from . import isolation

        with contextlib.suppress(Exception):
            isolation.hold_session_fixture(item, "orcjit_session")
    if not objects or not _own_fixture(item, "orcjit_lib"):
        return None
    from .api import warm_objects

    return functools.partial(warm_objects, session, objects)


def _prepare_libraries(
    item: pytest.Item, then: Callable[[], object] | None
) -> Callable[[], object] | None:
    """Find the item's shared libraries here; return what a new fork server calls: load, then.

    A library found for the first time starts a new fork server (see ``kernel_libraries``).
    """
    state = item.config.stash[STATE]
    needed = libraries_of(item)
    if kernel_libraries.find_new(needed, state.libraries):
        state.generation += 1
    if not needed:
        return then

    def warm() -> None:
        kernel_libraries.load(needed)
        if then is not None:
            then()

    return warm


def _own_fixture(item: pytest.Item, name: str) -> bool:
    """Whether the fixture ``name`` that ``item`` gets is this plugin's."""
    info = getattr(item, "_fixtureinfo", None)
    fixturedefs = info.name2fixturedefs.get(name) if info is not None else None
    if not fixturedefs:
        return False
    return getattr(fixturedefs[-1].func, "__module__", None) == __name__


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    resolved = item_settings(item)
    if isinstance(resolved, str):
        pytest.fail(resolved, pytrace=False)
    try:
        kernel_libraries.load(libraries_of(item))
    except ValueError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Errors name the sources, not the cache files, of the objects (``error_sources``).

    A test that asked an empty ``orcjit_lib`` for a function also learns why it is empty.
    """
    error = call.excinfo.value if call.excinfo is not None else None
    if error is not None:
        sources = item.config.stash[STATE].sources
        error_sources.name_sources(error, sources, item.config.rootpath)
    report = yield
    if isinstance(error, AttributeError) and "none of its objects (none)" in str(error):
        resolved = item_settings(item)
        if not isinstance(resolved, str) and not resolved.sources:
            report.sections.append(("orcjit", MSG_NO_SOURCES))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    state = session.config.stash.get(STATE, None)
    if workeroutput is not None and state is not None:
        workeroutput["orcjit_stats"] = run_stats(state).to_json()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: add a worker's compile counters to the controller's."""
    stats = getattr(node, "workeroutput", {}).get("orcjit_stats")
    if stats:
        node.config.stash[STATE].worker_stats.add(Stats.from_json(stats))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash[STATE]
    stats = run_stats(state)
    stats.add(state.worker_stats)
    compiled, reused, failed = stats.counts()
    if compiled or reused or failed:
        failures = f", {failed} failed" if failed else ""
        terminalreporter.write_line(
            MSG_SUMMARY.format(
                compiled=compiled, reused=reused, failed=failures, seconds=stats.seconds
            )
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.forked:
        from . import isolation

        isolation.shutdown(config)
    if state is not None and state.session is not None:
        state.session.close()
        state.session = None
    if state is not None and os.getpid() == state.pid:
        for path in (state.children_stats, state.temporary_cache):
            if path is not None and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path is not None:
                path.unlink(missing_ok=True)


# Fixtures: thin wrappers over the public API and the Builder.


@pytest.fixture(scope="session")
def orcjit_session(pytestconfig: pytest.Config) -> ExecutionSession:
    """The run's ExecutionSession (made in the pytest process, inherited by forked tests)."""
    return jit_session(pytestconfig)


@pytest.fixture
def orcjit_objects(request: pytest.FixtureRequest) -> list[Path]:
    """The compiled object paths of this test (its marker's sources, else --orcjit-sources)."""
    item = request.node
    outcomes = compile_units(item.config, units_of(item))
    for unit, outcome in outcomes.items():
        if outcome.error is not None:
            source = error_sources.relative(unit.source, item.config.rootpath)
            first = show_failure(item, unit)
            message = (
                MSG_COMPILE_FAILED.format(source=source, diagnostics=outcome.error.diagnostics)
                if first == item.nodeid
                else MSG_COMPILE_FAILED_AGAIN.format(source=source, first=first)
            )
            pytest.fail(message, pytrace=False)
    return [outcome.object for outcome in outcomes.values() if outcome.object is not None]


@pytest.fixture
def orcjit_lib(
    orcjit_session: ExecutionSession, orcjit_objects: list[Path], request: pytest.FixtureRequest
) -> Iterator[Library]:
    """A fresh library holding this test's objects; closed at teardown."""
    lib = orcjit_session.create_library(request.node.nodeid)
    with lib:
        for obj in orcjit_objects:
            lib.add(obj)
        yield lib


@pytest.fixture
def orcjit_cuda_device(pytestconfig: pytest.Config) -> int:
    """The CUDA device index (``--orcjit-cuda-device``, default 0); SKIPPED where there is none.

    Asks the CUDA runtime, so CUDA is initialised where the test runs: in its
    forked child by default, never in the pytest process (a child cannot use
    a CUDA context it inherits). Under ``--orcjit-isolation=none`` the pytest
    process itself initialises CUDA.
    """
    from . import cuda

    device = pytestconfig.stash[STATE].settings.cuda_device
    usable, reason = cuda.device_status(device)
    if not usable:
        pytest.skip(cuda.MSG_NO_DEVICE.format(reason=reason))
    return device


@pytest.fixture
def orcjit_compile(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """``orcjit_compile(path_or_source_text, cflags=(), language="c++") -> object path``.

    A string containing a newline is source text (``language`` is ``"c++"``,
    ``"c"`` or ``"cuda"``); anything else is a path, relative to the test
    file's directory. Cached like every other compile;
    raises ``pytest_orcjit.compiler.CompileError`` with the diagnostics.
    """
    config, base = request.config, request.node.path.parent

    def compile_one(source: Any, cflags: Sequence[str] = (), language: str = "c++") -> Path:
        __tracebackhide__ = True  # a failed compile shows the test's line, then the diagnostics
        flags = settings.split_flags(
            settings.Picked(cflags, "orcjit_compile(cflags=...)"), "cflags"
        )
        state, built = config.stash[STATE], builder(config)
        before = Stats()
        before.add(built.stats)
        try:
            if isinstance(source, str) and "\n" in source:
                obj, is_c = built.compile_text(source, flags, language), language == "c"
            else:
                path = base / source
                if not path.is_file():
                    raise FileNotFoundError(
                        f"orcjit_compile: no such source file {path}; a path is relative to the "
                        "test file's directory, and source text must span lines (contain a newline)"
                    )
                obj, is_c = built.compile(path, flags), path.suffix == ".c"
                state.sources[obj] = path
        except CompileError as err:
            raise CompileError(err.source, err.command, err.diagnostics, err.what) from None
        finally:
            if os.getpid() != state.pid:  # a forked test: tell the pytest process what it did
                _report_child_stats(state, built.stats, before)
        compilers = lambda: [built.cc if is_c else built.cxx]  # noqa: E731
        kernel_libraries.load(
            kernel_libraries.runtimes([*state.settings.cflags, *flags], compilers)
        )
        return obj

    return compile_one


# Settings of an item, the builder and the session, each made once on first use.


def item_settings(item: pytest.Item) -> ItemSettings | str:
    """The item's resolved settings (cached), or the message of its invalid marker."""
    if ITEM not in item.stash:
        try:
            item.stash[ITEM] = settings.item_settings(item, item.config.stash[STATE].settings)
        except ValueError as err:
            item.stash[ITEM] = str(err)
    return item.stash[ITEM]


def units_of(item: pytest.Item) -> list[Unit]:
    """The units an item's objects come from (none if it does not ask for objects)."""
    resolved = item_settings(item)
    if isinstance(resolved, str) or "orcjit_objects" not in getattr(item, "fixturenames", ()):
        return []
    return [Unit(source, resolved.flags) for source in resolved.sources]


def compile_units(config: pytest.Config, units: Sequence[Unit]) -> dict[Unit, Outcome]:
    """Outcomes of ``units``, compiling in parallel those not compiled yet in this run."""
    state = config.stash[STATE]
    missing = [unit for unit in units if unit not in state.outcomes]
    if missing:
        state.outcomes.update(builder(config).compile_many(missing, state.settings.jobs))
        state.generation += 1
        for unit in missing:
            if state.outcomes[unit].object not in (None, unit.source):
                state.sources[state.outcomes[unit].object] = unit.source  # type: ignore[index]
    outcomes = {unit: state.outcomes[unit] for unit in units}
    for outcome in outcomes.values():
        for note in outcome.notes:
            warnings.warn(note, CacheWarning, stacklevel=1)
        outcome.notes.clear()
    return outcomes


def builder(config: pytest.Config) -> Builder:
    """The run's Builder; an unusable compiler is a pytest.UsageError naming its option."""
    state = config.stash[STATE]
    if state.builder is None:
        s = state.settings
        cache_dir = _cache_dir(config)
        probe = functools.partial(_probe, cache_dir=cache_dir, launcher=s.launcher)
        cxx = probe(s.cxx.value or find_cxx(), s.cxx.origin, "C++", "cxx")
        cc_origin = s.cc.origin if s.cc.value else f"the C twin of {cxx.driver[0]}"
        cc = probe(find_cc(shlex.join(cxx.driver), s.cc.value), cc_origin, "C", "cc")
        cuda = CudaToolchain(s.nvcc.value, s.cuda_archs, s.nvcc_flags, cache_dir, s.launcher)
        state.builder = Builder(
            cxx, cache_dir, cc=cc, std=s.std, cflags=s.cflags, cuda=cuda, use_pch=s.pch
        )
    return state.builder


def libraries_of(item: pytest.Item) -> list[kernel_libraries.Needed]:
    """The shared libraries the item needs (``kernel_libraries.needed``)."""
    resolved = item_settings(item)
    if isinstance(resolved, str) or not resolved.uses_orcjit:
        return []

    def compilers() -> set[Compiler]:
        b = builder(item.config)
        return {b.cc if unit.source.suffix == ".c" else b.cxx for unit in units_of(item)} or {b.cxx}

    flags = [*item.config.stash[STATE].settings.cflags, *resolved.flags]
    needed = kernel_libraries.needed(resolved.libs, _cxx_command(item.config), flags, compilers)
    if any(unit.source.suffix in CUDA_SUFFIXES for unit in units_of(item)):
        from . import cuda  # CUDA objects register their fatbins with the CUDA runtime

        needed.append((cuda.runtime_library(), (), "the .cu sources"))
    return needed


def _cxx_command(config: pytest.Config) -> list[str]:
    """The C++ compiler whose library paths --orcjit-libs names are searched in first."""
    return shlex.split(config.stash[STATE].settings.cxx.value or find_cxx())


def jit_session(config: pytest.Config) -> ExecutionSession:
    """The run's ExecutionSession, created on first use; forked tests inherit it."""
    state = config.stash[STATE]
    if state.session is None:
        from .api import create_session

        state.session = create_session()
        state.generation += 1
    return state.session


def show_failure(item: pytest.Item, unit: Unit) -> str:
    """The test whose error shows ``unit``'s compile diagnostics: the first to ask."""
    return item.config.stash[STATE].failures_shown.setdefault(unit, item.nodeid)


def run_stats(state: State) -> Stats:
    """What this process and its forked tests compiled, reused and failed to compile."""
    stats = Stats()
    if state.builder is not None:
        stats.add(state.builder.stats)
    if state.children_stats is not None and state.children_stats.exists():
        for line in state.children_stats.read_text().splitlines():
            with contextlib.suppress(ValueError):
                stats.add(Stats.from_json(json.loads(line)))
    return stats


def _report_child_stats(state: State, stats: Stats, before: Stats) -> None:
    """Append, for the pytest process, what a forked test's compile added to ``stats``."""
    if state.children_stats is None:
        return
    added = Stats(
        stats.compiled - before.compiled, stats.reused - before.reused, stats.failed - before.failed
    )
    line = json.dumps(added.to_json()) + "\n"
    with contextlib.suppress(OSError):
        fd = os.open(state.children_stats, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())  # one write: lines of concurrent children do not mix
        finally:
            os.close(fd)


def prepare_fork(config: pytest.Config) -> None:
    """Build tvm-ffi's backtrace symbolizer in the pytest process, once per run.

    Called after the first forked test whose child symbolized a backtrace, so
    that later forked tests that raise do not each build it again (see
    ``pytest_orcjit.api.prepare_fork``). Until then the pytest process, and the
    memory every fork copies, stays without it.
    """
    state = config.stash[STATE]
    if not state.fork_prepared:
        from . import api

        api.prepare_fork()
        state.fork_prepared = True
        state.generation += 1


def _probe(
    command: str, origin: str, kind: str, name: str, cache_dir: Path, launcher: Sequence[str]
) -> Compiler:
    try:
        return Compiler.probe(command, cache_dir, launcher)
    except CompilerNotFound as err:
        flag, ini = f"--orcjit-{name}", f"orcjit_{name}"
        raise pytest.UsageError(
            MSG_NO_COMPILER.format(
                kind=kind, command=command, origin=origin, reason=err, flag=flag, ini=ini
            )
        ) from None


def _cache_dir(config: pytest.Config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:  # cleared by --cache-clear along with the rest of the cache
        return Path(cache.mkdir("orcjit"))
    state = config.stash[STATE]
    if state.temporary_cache is None:  # -p no:cacheprovider: removed at the end of the run
        state.temporary_cache = Path(tempfile.mkdtemp(prefix="pytest-orcjit-"))
    return state.temporary_cache
