"""Link order between libraries: ``user.link_against(base)`` resolves what ``user`` does not
define in ``base``'s exported definitions, before the process."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from pytest_orcjit import ExecutionSession, create_session


def base_library(session: ExecutionSession, kernels, *flags: str, compiler: str = "clang++-22"):
    """The library linked against: helper, a getpid of its own, a function that throws."""
    lib = session.create_library("base")
    lib.add(kernels.object("link_order_base.cc", *flags, compiler=compiler))
    lib.add(kernels.object("getpid_override.c", *flags, compiler=compiler))
    return lib


def user_library(session: ExecutionSession, kernels, *flags: str, compiler: str = "clang++-22"):
    """The library that calls into the base library."""
    lib = session.create_library("user")
    lib.add(kernels.object("link_order_user.cc", *flags, compiler=compiler))
    return lib


def events(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_without_link_against_the_symbols_are_undefined(session: ExecutionSession, kernels) -> None:
    base_library(session, kernels)
    user = user_library(session, kernels)
    with pytest.raises(
        RuntimeError, match=r"cannot link library 'user': .*undefined symbols? ('\w+', )*'helper'"
    ):
        user.get_function("call_helper")


def test_link_against_resolves_in_the_other_library(
    session: ExecutionSession, kernels, toolchain
) -> None:
    cxx, opt = toolchain
    base = base_library(session, kernels, opt, compiler=cxx)
    user = user_library(session, kernels, opt, compiler=cxx)
    user.link_against(base)
    assert user.get_function("call_helper")(4) == 41
    # The base library's getpid shadows the process's for the user library, as its own would.
    assert user.get_function("call_getpid")() == 4242
    # A C++ exception thrown in the base library is caught in the user library, by its type.
    assert user.get_function("catch_base_error")(7) == 1007
    assert base.get_function("base_helper")(2) == 21


def test_hidden_definitions_are_not_linked_against(session: ExecutionSession, kernels) -> None:
    base = base_library(session, kernels)
    user = session.create_library("user")
    user.add(kernels.object("link_order_user.cc", "-DUSE_HIDDEN"))
    user.link_against(base)
    with pytest.raises(RuntimeError, match=r"undefined symbol 'hidden_helper'"):
        user.get_function("call_helper")


def test_the_process_is_searched_after_the_libraries(session: ExecutionSession, kernels) -> None:
    base = session.create_library("base")
    base.add(kernels.object("link_order_base.cc"))  # no getpid of its own
    user = user_library(session, kernels)
    user.link_against(base)
    assert user.get_function("call_getpid")() == os.getpid()
    assert user.get_function("call_helper")(4) == 41


def test_several_libraries_are_searched_in_order(session: ExecutionSession, kernels) -> None:
    first = session.create_library("first")
    first.add(kernels.object("link_order_base.cc", "-DHELPER_OFFSET=1"))
    second = session.create_library("second")
    second.add(kernels.object("link_order_base.cc", "-DHELPER_OFFSET=2"))
    second.add(kernels.object("getpid_override.c"))
    forward = user_library(session, kernels)
    forward.link_against(first)
    forward.link_against(second)
    forward.link_against(first)  # again: nothing changes
    backward = user_library(session, kernels)
    backward.link_against(second)
    backward.link_against(first)
    assert forward.get_function("call_helper")(4) == 41
    assert backward.get_function("call_helper")(4) == 42
    # Only the second defines getpid: a name missing from the first is found in the next.
    assert forward.get_function("call_getpid")() == 4242


def test_the_library_linked_against_is_linked_and_initialized_first(
    session: ExecutionSession, kernels, event_log: Path
) -> None:
    base = base_library(session, kernels)
    user = user_library(session, kernels)
    user.link_against(base)
    del base  # the user library keeps it
    gc.collect()
    assert user.get_function("call_helper")(1) == 11
    assert events(event_log) == ["base", "user"]
    session.close()  # the dependent closes first
    assert events(event_log) == ["base", "user", "~user", "~base"]


def test_closing_a_library_linked_against_raises(
    session: ExecutionSession, kernels, event_log: Path
) -> None:
    base = base_library(session, kernels)
    user = user_library(session, kernels)
    user.link_against(base)
    assert user.get_function("call_helper")(1) == 11
    message = (
        r"cannot close library 'base': library 'user' is linked against it and still open; "
        r"close 'user' first"
    )
    with pytest.raises(RuntimeError, match=message):
        base.close()
    assert base.get_function("base_helper")(1) == 11, "base is still open"
    user.close()
    base.close()
    assert events(event_log) == ["base", "user", "~user", "~base"]


def test_libraries_of_different_sessions_cannot_be_linked(kernels) -> None:
    with create_session() as one, create_session() as other:
        base = base_library(one, kernels)
        user = user_library(other, kernels)
        with pytest.raises(ValueError, match=r"'user' .* 'base': they belong to different"):
            user.link_against(base)


def test_cycles_are_refused(session: ExecutionSession, kernels) -> None:
    a, b, c = (session.create_library(name) for name in "abc")
    b.link_against(a)
    c.link_against(b)
    with pytest.raises(ValueError, match=r"cannot link library 'a' against library 'c': 'c' "):
        a.link_against(c)
    with pytest.raises(ValueError, match=r"cannot link library 'a' against itself"):
        a.link_against(a)


def test_link_against_after_linking_is_refused(session: ExecutionSession, kernels) -> None:
    base = base_library(session, kernels)
    lib = session.create_library("linked")
    lib.add(kernels.object("math_ops.cc"))
    assert lib.get_function("test_add")(1, 2) == 3
    with pytest.raises(ValueError, match=r"library 'linked' has already linked"):
        lib.link_against(base)


def test_closed_libraries_cannot_be_linked(session: ExecutionSession, kernels) -> None:
    base = base_library(session, kernels)
    base.close()
    user = user_library(session, kernels)
    with pytest.raises(RuntimeError, match=r"library 'base' is closed"):
        user.link_against(base)


def test_link_against_takes_a_library(session: ExecutionSession) -> None:
    lib = session.create_library()
    with pytest.raises(TypeError, match=r"link_against takes a Library, not str"):
        lib.link_against("base")  # type: ignore[arg-type]
