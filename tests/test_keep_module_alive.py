"""``load_module(..., keep_module_alive=True)``: as ``tvm_ffi.load_module`` does, the module joins
tvm-ffi's process-wide set of modules and stays loaded when the caller drops it."""

from __future__ import annotations

import gc
import inspect
from pathlib import Path

import tvm_ffi
from test_lifetime import (
    CONSTRUCTORS,
    assert_constructed_in_order,
    assert_destroyed_once_in_order,
    events,
    run_python,
)

from pytest_orcjit import ExecutionSession


def test_by_default_dropping_the_module_closes_it(
    session: ExecutionSession, kernels, event_log: Path
) -> None:
    module = session.load_module(kernels.object("static_init.cc"))
    module.test_touch_local()
    assert_constructed_in_order(event_log)
    del module
    gc.collect()
    assert_destroyed_once_in_order(event_log)


def test_a_kept_module_outlives_its_references(
    session: ExecutionSession, kernels, event_log: Path
) -> None:
    module = session.load_module(kernels.object("static_init.cc"), keep_module_alive=True)
    module.test_touch_local()
    del module
    gc.collect()
    assert events(event_log) == [*CONSTRUCTORS, "local"], "no destructor ran: it is still loaded"
    session.close()  # closing the session closes it all the same
    assert_destroyed_once_in_order(event_log)


def test_a_kept_module_is_released_by_module_globals_remove(
    session: ExecutionSession, kernels, event_log: Path
) -> None:
    module = session.load_module(kernels.object("static_init.cc"), keep_module_alive=True)
    module.test_touch_local()
    tvm_ffi.get_global_func("ffi.ModuleGlobalsRemove")(module)
    del module
    gc.collect()
    assert_destroyed_once_in_order(event_log)


def test_the_process_exits_cleanly_with_kept_modules(kernels, event_log: Path) -> None:
    """Nothing closes a kept module's library at exit: its static destructors do not run (README,
    "Import trees and keep_module_alive")."""
    result = run_python(
        f"""
        from pytest_orcjit import create_session, default_session
        for session in (default_session(), create_session()):
            module = session.load_module({str(kernels.object("static_init.cc"))!r},
                                         keep_module_alive=True)
            assert module.test_event_count() == {len(CONSTRUCTORS)}
        print("exiting")
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exiting" in result.stdout
    assert events(event_log) == CONSTRUCTORS * 2


def test_the_default_differs_from_tvm_ffi_load_module() -> None:
    """tvm_ffi.load_module keeps a shared library by default; a JIT library is released on drop
    by default (as apache-tvm-ffi-orcjit's load_module does), so that loading in a loop does not
    grow the process."""
    from pytest_orcjit.api import ExecutionSession as Session

    assert inspect.signature(tvm_ffi.load_module).parameters["keep_module_alive"].default is True
    assert inspect.signature(Session.load_module).parameters["keep_module_alive"].default is False
