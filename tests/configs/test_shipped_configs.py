"""Every experiment file in configs/ loads, validates and says how to run it."""
from __future__ import annotations

import dataclasses
import typing

import pytest

from configs import CONFIG_DIR
from configs.experiment import ExperimentConfig, load_config
from configs.typed import ConfigError, field_docs

CONFIG_FILES = sorted(CONFIG_DIR.glob("*.yaml"))


def test_there_are_configs():
    assert {p.name for p in CONFIG_FILES} >= {"countdown-3.yaml", "countdown-4.yaml"}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_loads_and_starts_with_its_command(path):
    config = load_config(path)
    assert isinstance(config, ExperimentConfig)
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# treadle "), f"{path.name} must start with the command that runs it"
    assert path.name in first_line


def test_named_settings():
    small = load_config(CONFIG_DIR / "countdown-3.yaml").task.countdown
    assert (small.numbers, small.max_number, small.target_min, small.target_max) == (3, 30, 10, 50)
    apr = load_config(CONFIG_DIR / "countdown-4.yaml").task.countdown
    assert (apr.numbers, apr.max_number, apr.target_min, apr.target_max) == (4, 100, 10, 100)
    assert (apr.num_train, apr.num_val) == (500_000, 1_000)


def test_every_config_field_has_a_docstring():
    classes = {ExperimentConfig}
    queue = [ExperimentConfig]
    while queue:
        cls = queue.pop()
        for hint in typing.get_type_hints(cls).values():
            if dataclasses.is_dataclass(hint) and hint not in classes:
                classes.add(hint)
                queue.append(hint)
    for cls in classes:
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(field_docs(cls)) == names, f"{cls.__name__} has fields without a docstring"


def test_bad_override_names_the_key():
    with pytest.raises(ConfigError, match=r"task\.countdown\.max_numbr: unknown key; did you mean 'max_number'"):
        load_config(CONFIG_DIR / "countdown-3.yaml", ["task.countdown.max_numbr=5"])


def test_base_inheritance(tmp_path):
    (tmp_path / "child.yaml").write_text(
        f"# treadle config child.yaml\nbase: {CONFIG_DIR / 'countdown-3.yaml'}\nname: child\ntask:\n  countdown:\n    seed: 5\n"
    )
    config = load_config(tmp_path / "child.yaml")
    assert config.name == "child" and config.task.countdown.seed == 5 and config.task.countdown.numbers == 3


@pytest.mark.parametrize(
    "text, expected",
    [
        ("task: [1, 2\n", "is not valid YAML"),
        ("- a\n- b\n", "must hold a mapping"),
        ("base: missing.yaml\n", "no such config file"),
        ("base: self.yaml\n", "chain of more than"),
    ],
)
def test_bad_files(tmp_path, text, expected):
    path = tmp_path / "self.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)
