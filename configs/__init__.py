"""Experiment configs: the typed config tree (Python) and the experiments (YAML files here).

Kept light on purpose: component dataclasses import `configs.typed`, and this package's
`experiment` module imports them, so nothing heavy happens at import time.
"""
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
