"""Helpers shared by subcommands."""
from __future__ import annotations


def load_experiment(config_path: str | None, overrides: list[str]):
    """The validated experiment tree of a YAML file, or of the built-in defaults."""
    from configs.experiment import ExperimentConfig, load_config
    from configs.loading import apply_overrides
    from configs.typed import build

    if config_path is not None:
        return load_config(config_path, overrides)
    return build(ExperimentConfig, apply_overrides({}, overrides))
