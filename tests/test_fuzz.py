"""Malformed objects never crash the process: a fixed-seed mutation campaign per test run."""

from __future__ import annotations

import collections

from fuzz_objects import campaign

MUTANTS = 1000
SEED = 20261124


def test_mutants_give_a_clean_exception_or_a_working_library(kernels) -> None:
    outcomes = campaign(kernels.object("math_ops.cc"), MUTANTS, SEED, "test_add")
    crashed = [outcome for outcome in outcomes if outcome.result not in ("linked", "rejected")]
    assert crashed == []
    results = collections.Counter(outcome.result for outcome in outcomes)
    # The campaign exercises both sides: most mutants are rejected, some still link.
    assert results["rejected"] > MUTANTS // 2
    assert len(outcomes) == MUTANTS


def test_rejections_name_the_object_and_the_problem(kernels) -> None:
    outcomes = campaign(kernels.object("math_ops.cc"), 60, SEED + 1, "test_add")
    for outcome in outcomes:
        if outcome.result == "rejected" and outcome.detail.startswith("ValueError"):
            assert "'<bytes>'" in outcome.detail, outcome.detail
