"""Loads, calls and drops from several Python threads at once on one session."""

from __future__ import annotations

import threading

from pytest_orcjit import ExecutionSession

THREADS = 8
CYCLES = 200


def run_in_threads(work) -> None:
    """Runs ``work(index)`` in THREADS threads started together; re-raises the first error."""
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        start.wait()
        try:
            work(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=body, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]


def test_load_call_drop_cycles(session: ExecutionSession, kernels) -> None:
    c_object = kernels.read("safe_call.c")
    cxx_object = kernels.read("math_ops.cc")
    finished = [0] * THREADS

    def cycles(index: int) -> None:
        for cycle in range(CYCLES):
            lib = session.create_library(f"t{index}c{cycle}")
            lib.add(c_object)
            assert lib.get_function("c_counter")() == 1  # its own data, fresh in every library
            assert lib.get_function("c_add")(index, cycle) == index + cycle
            if cycle % 10 == 0:  # C++ with unwind tables, now and then
                lib.add(cxx_object)
                assert lib.get_function("test_mul")(index, cycle) == index * cycle
            if cycle % 2:
                lib.close()
            del lib  # the even cycles are released by dropping the last reference
            finished[index] += 1

    run_in_threads(cycles)
    assert finished == [CYCLES] * THREADS


def test_load_module_and_errors_from_threads(session: ExecutionSession, kernels) -> None:
    good = kernels.read("math_ops.cc")
    undefined = kernels.read("undefined_symbol.cc")

    def cycles(index: int) -> None:
        for cycle in range(60):
            module = session.load_module(good)
            assert module.test_add(index, cycle) == index + cycle
            try:
                session.load_module(undefined)
            except RuntimeError as error:
                assert "orcjit_test_undefined_function" in str(error)
            else:
                raise AssertionError("an undefined symbol linked")

    run_in_threads(cycles)
