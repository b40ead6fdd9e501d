"""String, Array and Map kernels (kernels/strings.cc)."""

import collections

import pytest


@pytest.mark.parametrize(
    "text",
    ["", "one", "the cat and the hat", "  tabs\tand\nnewlines  and\ttabs "],
    ids=["empty", "one-word", "sentence", "whitespace"],
)
def test_word_counts(orcjit_lib, text):
    counts = orcjit_lib.word_counts(text)
    assert dict(counts.items()) == collections.Counter(text.split())


@pytest.mark.parametrize(
    ("parts", "sep", "expected"),
    [([], ",", ""), (["a"], ",", "a"), (["a", "b", "c"], ", ", "a, b, c"), (["x", "y"], "", "xy")],
)
def test_join_strings(orcjit_lib, parts, sep, expected):
    assert orcjit_lib.join_strings(parts, sep) == expected


def test_invert_map(orcjit_lib):
    inverted = orcjit_lib.invert_map({"one": 1, "two": 2, "three": 3})
    assert dict(inverted.items()) == {1: "one", 2: "two", 3: "three"}


def test_invert_map_rejects_shared_values(orcjit_lib):
    with pytest.raises(ValueError, match=r"not invertible: keys '.+' and '.+' share the value 7"):
        orcjit_lib.invert_map({"a": 7, "b": 7})


def test_join_strings_rejects_non_strings(orcjit_lib):
    with pytest.raises(TypeError, match="join_strings"):
        orcjit_lib.join_strings(["a", 2], ",")
