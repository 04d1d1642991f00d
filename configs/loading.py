"""Reading experiment YAML files: `base:` inheritance and `key.sub=value` overrides.

An experiment file may name another one to start from (`base: countdown-3.yaml`,
relative to the file); its own keys are merged over the base's, section by section.
Command-line overrides are applied last; each value is read as YAML, so `3`, `1.5e-3`,
`true`, `[1, 2]` and `tiny` mean what they look like.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from configs.typed import ConfigError

MAX_BASE_DEPTH = 8


def read_yaml(path: str | Path, _depth: int = 0) -> dict[str, Any]:
    """Read an experiment file and its `base:` chain into one nested dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"<file>: no such config file: {path}"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError([f"<file>: {path} is not valid YAML: {e}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"<root>: {path} must hold a mapping of sections, got {type(data).__name__}"])
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError([f"base: expected a file name, got {base!r}"])
    if _depth >= MAX_BASE_DEPTH:
        raise ConfigError([f"base: chain of more than {MAX_BASE_DEPTH} files (a cycle?) at {path}"])
    return merge(read_yaml(path.parent / base, _depth + 1), data)


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `top` over `base`: sections merge, every other value replaces."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` strings to a nested dict (returns a new dict)."""
    result = merge({}, data)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError([f"<override>: expected key.sub=value, got {override!r}"])
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        *sections, leaf = key.split(".")
        node = result
        for i, section in enumerate(sections):
            child = node.get(section)
            if child is None:
                child = node[section] = {}
            elif not isinstance(child, dict):
                where = ".".join(sections[: i + 1])
                raise ConfigError([f"{where}: is a value, not a section (in override {override!r})"])
            else:
                child = node[section] = dict(child)
            node = child
        node[leaf] = value
    return result
