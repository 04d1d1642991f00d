"""The typed config machinery: building, type and range errors, suggestions, overrides."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from configs.loading import apply_overrides, merge
from configs.typed import ConfigError, FieldError, bounds, build, field_docs, one_of, require, to_dict


@dataclass
class Inner:
    size: int = field(default=4, metadata=bounds(ge=1, le=10))
    """How many."""
    rate: float = field(default=0.5, metadata=bounds(gt=0.0))
    """How fast."""
    kind: str = field(default="a", metadata=one_of("a", "b"))
    """Which kind."""


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    """The inner section."""
    flags: list[int] = field(default_factory=list)
    """Some integers."""
    mode: Literal["x", "y"] = "x"
    """A literal."""
    note: str | None = None
    """Optional text."""
    low: int = 0
    """Lower bound."""
    high: int = 1
    """Upper bound."""

    def validate(self) -> None:
        require(self.low <= self.high, "low", f"must be <= high ({self.low} > {self.high})")


def errors_of(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build(Outer, data)
    return info.value.errors


def test_defaults_and_values():
    config = build(Outer, {"inner": {"size": 7, "rate": 2}, "flags": [1, 2], "note": "hi"})
    assert config.inner.size == 7 and config.inner.rate == 2.0 and isinstance(config.inner.rate, float)
    assert config.flags == [1, 2] and config.note == "hi" and config.mode == "x"
    assert to_dict(config)["inner"] == {"size": 7, "rate": 2.0, "kind": "a"}


def test_float_written_without_a_dot_is_read():
    # YAML 1.1 loads `1e-3` as a string.
    assert build(Outer, {"inner": {"rate": "1e-3"}}).inner.rate == 1e-3


def test_unknown_key_is_named_with_a_suggestion():
    (error,) = errors_of({"inner": {"sise": 3}})
    assert error.startswith("inner.sise: unknown key; did you mean 'size'?")
    assert "allowed: size, rate, kind" in error


def test_unknown_key_without_close_match():
    (error,) = errors_of({"zzzz": 1})
    assert error.startswith("zzzz: unknown key (allowed:")


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"inner": {"size": "3"}}, "inner.size: expected an integer, got '3' (str)"),
        ({"inner": {"size": True}}, "inner.size: expected an integer, got True (bool)"),
        ({"inner": {"size": 11}}, "inner.size: must be >= 1 and <= 10; got 11 (int)"),
        ({"inner": {"size": -5}}, "inner.size: must be >= 1 and <= 10; got -5 (int)"),
        ({"inner": {"rate": 0}}, "inner.rate: must be > 0.0; got 0.0 (float)"),
        ({"inner": {"rate": "fast"}}, "inner.rate: expected a number, got 'fast' (str)"),
        ({"inner": {"kind": "c"}}, "inner.kind: must be one of a, b; got 'c' (str)"),
        ({"mode": "z"}, "mode: must be one of x, y; got 'z' (str)"),
        ({"flags": [1, "two"]}, "flags[1]: expected an integer, got 'two' (str)"),
        ({"flags": 3}, "flags: expected a list, got 3 (int)"),
        ({"inner": 5}, "inner: expected a section (mapping), got 5 (int)"),
        ({"low": 5, "high": 2}, "low: must be <= high (5 > 2)"),
    ],
)
def test_each_problem_names_the_key(data, expected):
    assert errors_of(data) == [expected]


def test_all_problems_are_reported_together():
    errors = errors_of({"inner": {"size": 0, "kind": "q"}, "mode": "z"})
    assert [e.split(":")[0] for e in errors] == ["inner.size", "inner.kind", "mode"]


def test_absurd_sizes_are_refused():
    (error,) = errors_of({"inner": {"size": 10**12}})
    assert "inner.size" in error and "<= 10" in error


def test_field_docs_reads_attribute_docstrings():
    assert field_docs(Inner) == {"size": "How many.", "rate": "How fast.", "kind": "Which kind."}


def test_overrides_parse_yaml_values_and_create_sections():
    data = apply_overrides({"inner": {"size": 2}}, ["inner.rate=1.5", "flags=[1, 2]", "note=hello", "inner.kind=b"])
    assert data == {"inner": {"size": 2, "rate": 1.5, "kind": "b"}, "flags": [1, 2], "note": "hello"}
    assert build(Outer, data).inner.kind == "b"


@pytest.mark.parametrize("override", ["inner", "=3", "inner..size=3"])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_overrides({}, [override])


def test_override_into_a_value_is_refused():
    with pytest.raises(ConfigError, match="inner.size: is a value, not a section"):
        apply_overrides({"inner": {"size": 2}}, ["inner.size.deep=1"])


def test_overrides_do_not_mutate_their_input():
    data = {"inner": {"size": 2}}
    apply_overrides(data, ["inner.size=3"])
    assert data == {"inner": {"size": 2}}


def test_merge_is_deep():
    assert merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}}) == {"a": {"x": 1, "y": 3}, "b": 1}


def test_field_error_carries_key():
    with pytest.raises(FieldError) as info:
        require(False, "k", "bad")
    assert info.value.key == "k" and str(info.value) == "k: bad"
