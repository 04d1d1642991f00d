"""Typed configuration: plain dataclasses built from YAML-shaped dicts, validated up front.

A component owns a small dataclass. Each field has a default, a docstring (the string
literal under it, read by `field_docs`) and, where it matters, a range or a set of
choices declared with `bounds(...)` / `one_of(...)`. Cross-field rules live in an
optional `validate(self)` method that raises `FieldError`.

`build(cls, data)` turns a nested dict into a dataclass tree and collects every problem
(unknown key with a close-match suggestion, wrong type, out-of-range value, broken
cross-field rule) into one `ConfigError` whose lines each start with the dotted key.

Supported field types: bool, int, float, str, Optional[T], list[T], Literal[...] and
nested dataclasses. Anything else is a programming error, caught by an assert.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import textwrap
import types
import typing
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


class ConfigError(ValueError):
    """One or more configuration problems; each line names the dotted key."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.errors))


class FieldError(Exception):
    """Raised by a dataclass's `validate()`: `key` is the field name within that dataclass."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


def bounds(ge: float | None = None, le: float | None = None, gt: float | None = None) -> dict:
    """Field metadata for a numeric range: `field(default=3, metadata=bounds(ge=2, le=6))`."""
    return {"ge": ge, "le": le, "gt": gt}


def one_of(*choices: str) -> dict:
    """Field metadata for a string that must be one of `choices`."""
    return {"choices": tuple(choices)}


def require(condition: bool, key: str, message: str) -> None:
    """For `validate()` methods: raise `FieldError(key, message)` unless `condition`."""
    if not condition:
        raise FieldError(key, message)


def build(cls: type[T], data: Any, path: str = "") -> T:
    """Build and validate `cls` from `data` (a nested dict); raise ConfigError on any problem."""
    errors: list[str] = []
    result = _build_dataclass(cls, data, path, errors)
    if errors:
        raise ConfigError(errors)
    return result


def to_dict(config: Any) -> Any:
    """The plain-dict form of a config tree (inverse of `build`)."""
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass: {field name: the string literal under it}."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _build_dataclass(cls: type, data: Any, path: str, errors: list[str]) -> Any:
    if data is None:
        data = {}
    start = len(errors)
    if not isinstance(data, dict):
        errors.append(f"{path or '<root>'}: expected a section (mapping), got {_show(data)}")
        return None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            errors.append(f"{_join(path, str(key))}: {_unknown_key_hint(str(key), list(fields))}")
    values: dict[str, Any] = {}
    num_errors = len(errors)
    for name, f in fields.items():
        if name not in data:
            continue
        value = _convert(hints[name], data[name], _join(path, name), errors)
        if len(errors) == num_errors:
            _check_metadata(f.metadata, value, _join(path, name), errors)
        values[name] = value
        num_errors = len(errors)
    if len(errors) > start:
        return None
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        try:
            validate()
        except FieldError as e:
            errors.append(f"{_join(path, e.key)}: {e.message}")
    return instance


def _unknown_key_hint(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"unknown key; did you mean '{close[0]}'?" if close else "unknown key"
    return f"{hint} (allowed: {', '.join(allowed)})"


def _convert(hint: Any, value: Any, key: str, errors: list[str]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build_dataclass(hint, value, key, errors)
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if value is None:
            return None
        assert len(non_none) == 1, f"unsupported union type for {key}: {hint}"
        return _convert(non_none[0], value, key, errors)
    if origin is Literal:
        if value not in args:
            errors.append(f"{key}: must be one of {', '.join(map(str, args))}; got {_show(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{key}: expected a list, got {_show(value)}")
            return value
        return [_convert(args[0], item, f"{key}[{i}]", errors) for i, item in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            errors.append(f"{key}: expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{key}: expected an integer, got {_show(value)}")
        return value
    if hint is float:
        return _to_float(value, key, errors)
    if hint is str:
        if not isinstance(value, str):
            errors.append(f"{key}: expected a string, got {_show(value)}")
        return value
    raise AssertionError(f"unsupported config field type for {key}: {hint}")


def _to_float(value: Any, key: str, errors: list[str]) -> Any:
    # YAML 1.1 reads `1e-3` (no dot) as a string; accept any string float() reads.
    if isinstance(value, bool):
        errors.append(f"{key}: expected a number, got {_show(value)}")
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    errors.append(f"{key}: expected a number, got {_show(value)}")
    return value


def _check_metadata(meta: Any, value: Any, key: str, errors: list[str]) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        errors.append(f"{key}: must be one of {', '.join(choices)}; got {_show(value)}")
    ge, le, gt = meta.get("ge"), meta.get("le"), meta.get("gt")
    if ge is None and le is None and gt is None:
        return
    ok = (ge is None or value >= ge) and (le is None or value <= le) and (gt is None or value > gt)
    if not ok:
        errors.append(f"{key}: must be {_describe_range(ge, le, gt)}; got {_show(value)}")


def _describe_range(ge: Any, le: Any, gt: Any) -> str:
    low = f">= {ge}" if ge is not None else (f"> {gt}" if gt is not None else "")
    if low and le is not None:
        return f"{low} and <= {le}"
    return low or f"<= {le}"


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
