"""The import rules of DESIGN.md, checked on the source: who may import ray, torch, whom.

actors -> (rollout, learner, reasoning, reward); reasoning -> (rollout, reward);
rollout and learner never import ray; reward imports neither torch nor ray.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("actors", "rollout", "learner", "reasoning", "reward", "configs")
FORBIDDEN = {
    "reward": {"torch", "ray", "transformers", "actors", "rollout", "learner", "reasoning"},
    "reasoning": {"ray", "actors", "learner"},
    "rollout": {"ray", "actors", "learner", "reasoning"},
    "learner": {"ray", "actors", "rollout"},
    "configs": {"ray", "torch", "actors"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_import_direction(package):
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        bad = imported_top_levels(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(REPO)} imports {', '.join(sorted(bad))}")
    assert not offenders, "\n".join(offenders)


def test_cli_imports_no_heavy_library_at_start():
    bad = imported_top_levels(REPO / "actors" / "cli.py") & {"ray", "torch", "transformers", "pyarrow"}
    assert not bad
