"""The pytest plugin: compile kernel sources once, give each test a fresh JIT library.

Loaded through the ``pytest11`` entry point ``orcjit`` (``-p no:orcjit`` turns
it off). Options and their precedence live in :mod:`pytest_orcjit.settings`,
the run's state in :mod:`pytest_orcjit.run_state`, the compile step in
:mod:`pytest_orcjit.compile_step` (over :mod:`pytest_orcjit.compiler` and
:mod:`pytest_orcjit.cache`), the fork boundary in :mod:`pytest_orcjit.isolation`.

The run goes: configure (resolve settings; check the compiler if sources are
configured) -> collection finish (compile every source the selected tests need,
in parallel, thread pool shut down) -> per test, in the parent: create the
session, then fork the test if its isolation is ``fork`` -> summary.

Importing this module does not load the native core: ``pytest_orcjit.api`` is
imported inside the hooks and fixtures that need the JIT.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shlex
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from . import (
    coverage,
    crash_reports,
    error_sources,
    kernel_libraries,
    learned_imports,
    pytest_internals,
    sanitize,
    settings,
)
from .compile_step import (
    CUDA_SUFFIXES,
    MSG_SUMMARY,
    builder,
    compile_for_test,
    compile_units,
    cxx_command,
    libraries_of,
    objects_of,
    run_stats,
    show_failure,
    units_of,
)
from .compiler import Stats, find_cxx, tvm_ffi_version
from .run_state import STATE, Prepared, PreparedKey, State, item_settings

if TYPE_CHECKING:
    from .api import ExecutionSession, Library

MSG_HEADER = "orcjit: {compiler}, LLVM {llvm}, tvm-ffi {tvm_ffi}, {sources} orcjit_sources"
MSG_HEADER_NO_COMPILER = "compiler chosen on first compile"
MSG_NO_CORE = "unavailable ({error}: native core not loaded)"
MSG_NO_SOURCES = (
    "no sources are configured (orcjit_sources is empty and the test has no orcjit marker with "
    "sources=...): set orcjit_sources in the ini file or --orcjit-sources"
)


# Hooks, in the order pytest calls them.


def pytest_addoption(parser: pytest.Parser) -> None:
    settings.addoptions(parser)
    coverage.addoptions(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """--orcjit-sanitize=address: restart pytest once, its runtime preloaded (``sanitize``)."""
    picked, cxx = settings.pick(config, "sanitize"), settings.pick(config, "cxx").value
    sanitize.restart_if_asked(config, picked, lambda: shlex.split(cxx or find_cxx()))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", settings.MARKER_HELP)
    state = State(settings.session_settings(config))
    config.stash[STATE] = state
    if state.settings.perf_map:  # read by the native core when the session is created
        os.environ[settings.PERF_MAP_ENV] = "1"
    sanitize.configure(config, state.pid)
    if state.settings.configured:
        builder(config)  # a bad compiler is a usage error before any test runs
    coverage.configure(config, functools.partial(builder, config))  # if --orcjit-coverage
    try:
        kernel_libraries.check(state.settings.libs, cxx_command(config))
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
        crash_reports.report_crashes_here(item.config)
        return None  # in-process; an invalid marker fails in pytest_runtest_setup
    then, key, plain = _prepare_children(item)
    warm = _prepare_libraries(item, then=then)
    fallback = _prepare_libraries(item, then=plain) if key is not None else None
    from . import isolation

    if not state.forked:
        _recall_learned(item.config)
    state.forked = True
    if state.children_stats is None:
        fd, name = tempfile.mkstemp(prefix="pytest-orcjit-stats-")
        os.close(fd)
        state.children_stats = Path(name)
    end = isolation.run_forked(
        item,
        nextitem,
        resolved.timeout,
        state.generation,
        state.warning_filters,
        warm,
        key,
        fallback,
    )
    if end.get("backtraced"):  # so that later children find the symbolizer built
        with contextlib.suppress(Exception):
            prepare_fork(item.config)
    if end.get("imported") and state.settings.learn_imports:
        _learn_imports(item.config, end["imported"])
    return True


def _recall_learned(config: pytest.Config) -> None:
    """Before the run's first fork, do what the last run's forked tests taught it to."""
    backtraced, imported = learned_imports.remembered(config)
    if backtraced:
        with contextlib.suppress(Exception):
            prepare_fork(config)
    if imported and config.stash[STATE].settings.learn_imports:
        _learn_imports(config, imported)


def _learn_imports(config: pytest.Config, imported: learned_imports.Imported) -> None:
    """Import what a forked test imported, for later tests' children (``learned_imports``)."""
    state = config.stash[STATE]
    names, threaded = learned_imports.learn(imported, config.rootpath)
    if names:
        state.generation += 1  # the next forked test starts a server that has them
        state.learned += [(name, origin) for name, origin in imported if name in names]
    if threaded:
        state.settings = dataclasses.replace(state.settings, learn_imports=False)
        message = learned_imports.MSG_THREADS.format(name=threaded[0])
        warnings.warn(pytest.PytestWarning(message), stacklevel=1)


def _prepare_children(
    item: pytest.Item,
) -> tuple[Callable[[], object] | None, PreparedKey | None, Callable[[], object] | None]:
    """Do here, once, what each forked child of ``item`` would otherwise do again.

    Compiles the item's objects, makes the run's JIT session and sets up the
    plugin's ``orcjit_session`` fixture: children inherit all three. Returns
    what a new fork server is to call before its first fork (None: nothing),
    the key of the library it prepares (None: none, the server is shared by
    every such item), and what to call instead where preparing it killed the
    server (it only warms the objects). Where the item's ``orcjit_lib`` can start linked
    (``_links_itself``), the server links it and runs its constructors
    (``_prepare_library``); otherwise it links the objects once in a throwaway
    library (``api.warm_objects``), which later links start from.
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
        return None, None, None
    try:
        session = jit_session(item.config)
    except Exception:
        return None, None, None  # the child's orcjit_session fixture raises it, as the test's error
    if _own_fixture(item, "orcjit_session"):  # not a conftest's override
        with contextlib.suppress(Exception):
            pytest_internals.hold_session_fixture(item, "orcjit_session")
    if not objects or not _own_fixture(item, "orcjit_lib"):
        return None, None, None
    from .api import warm_objects

    plain = functools.partial(warm_objects, session, objects)
    if _links_itself(item):
        return plain, None, plain
    key = (tuple(objects), tuple(repr(needed) for needed in libraries_of(item)))
    return functools.partial(_prepare_library, item.config, session, key), key, plain


def _links_itself(item: pytest.Item) -> bool:
    """Whether a forked ``item`` links its ``orcjit_lib`` itself, rather than take the server's.

    It does unless ``--orcjit-prelink`` is on, when its marker says
    ``own_load=True``, when it compiles sources
    of its own (``orcjit_compile``), when it has CUDA sources, under
    ``--orcjit-coverage`` (a library's constructor names the test its counters
    belong to), and when the test or a fixture other than ``orcjit_lib`` takes
    ``orcjit_session`` (it may make libraries that link against
    ``orcjit_lib``, or that it links against, before ``orcjit_lib`` links).
    """
    resolved = item_settings(item)
    if isinstance(resolved, str) or resolved.own_load:
        return True
    if item.config.pluginmanager.has_plugin("orcjit-coverage"):
        return True
    if "orcjit_compile" in getattr(item, "fixturenames", ()):
        return True
    if any(unit.source.suffix in CUDA_SUFFIXES for unit in units_of(item)):
        return True  # registering fatbins in the server would be CUDA work before a fork
    users = pytest_internals.fixture_users(item, "orcjit_session")
    return any(
        getattr(user, "__module__", None) != __name__ or user.__name__ != "orcjit_lib"
        for user in users
    )


def _prepare_library(config: pytest.Config, session: ExecutionSession, key: PreparedKey) -> None:
    """In a new fork server: link the library of ``key``'s objects and run its constructors.

    Each child's ``orcjit_lib`` takes it (``_take_prepared``): a copy of the
    server's memory, as fresh as a library linked in the child. If linking
    fails, the objects are only warmed: each child links them again and meets
    the error as the test's own.
    """
    from .api import warm_objects

    library = session.create_library("orcjit_lib")
    try:
        for path in key[0]:
            library.add(path)
        library.link()
    except Exception:
        with contextlib.suppress(Exception):
            library.close()
        warm_objects(session, key[0])
        return
    config.stash[STATE].prepared = Prepared(key, library)


def _take_prepared(config: pytest.Config, objects: Sequence[Path]) -> Library | None:
    """The fork server's library of ``objects``, in a forked child, once; else None."""
    state = config.stash[STATE]
    prepared, state.prepared = state.prepared, None
    if prepared is None or os.getpid() == state.pid or prepared.key[0] != tuple(objects):
        return None
    return prepared.library


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
    fixturedefs = pytest_internals.fixture_defs(item, name)
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
    flags = [*item.config.stash[STATE].settings.cflags, *resolved.flags]
    sanitize.start(item, *sanitize.of_test(resolved.sanitize, flags))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Errors name the sources, not the cache files, of the objects (``error_sources``).

    A test that asked an empty ``orcjit_lib`` for a function also learns why it is empty.
    """
    error = call.excinfo.value if call.excinfo is not None else None
    if error is not None:
        sources = item.config.stash[STATE].sources
        error_sources.name_sources(error, sources, item.config.rootpath)
    resolved = item_settings(item)
    forked = (
        os.getpid() == item.config.stash[STATE].pid and getattr(resolved, "isolation", "") == "fork"
    )
    sanitize.fail_on_report(item, call, forked)
    report = yield
    if isinstance(error, AttributeError) and "none of its objects (none)" in str(error):
        resolved = item_settings(item)
        if not isinstance(resolved, str) and not resolved.sources:
            report.sections.append(("orcjit", MSG_NO_SOURCES))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    sanitize.finish(session.config)  # here: an xdist worker may not live to pytest_unconfigure
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
        learned_imports.remember(config, state.fork_prepared, state.learned)
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
    return objects_of(request.node)


@pytest.fixture
def orcjit_lib(
    orcjit_session: ExecutionSession, orcjit_objects: list[Path], request: pytest.FixtureRequest
) -> Iterator[Library]:
    """A fresh library holding this test's objects, named for the test; closed at teardown.

    A forked test gets it linked, with its static constructors run, by its
    fork server (a copy of that library's memory, as the fork made it; see
    ``_prepare_children``), unless it links its own (``_links_itself``).
    """
    lib = _take_prepared(request.config, orcjit_objects)
    if lib is not None:
        lib.name = request.node.nodeid
        with lib:
            yield lib
        return
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
    resolved = item_settings(request.node)
    sanitizers = () if isinstance(resolved, str) else resolved.sanitize.value

    def compile_one(source: Any, cflags: Sequence[str] = (), language: str = "c++") -> Path:
        __tracebackhide__ = True  # a failed compile shows the test's line, then the diagnostics
        compiled = compile_for_test(config, base, source, cflags, language, sanitizers)
        sanitize.after_compile(request.node, cflags)
        return compiled

    return compile_one


# The session, made once on first use.


def jit_session(config: pytest.Config) -> ExecutionSession:
    """The run's ExecutionSession, created on first use; forked tests inherit it."""
    state = config.stash[STATE]
    if state.session is None:
        from .api import create_session

        state.session = create_session()
        state.generation += 1
        crash_reports.report_crashes_here(config)  # the core is loaded now
    return state.session


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
