"""The import rules of DESIGN.md, checked on the source: who may import ray, torch, whom.

actors -> (rollout, learner, reasoning, reward); reasoning -> (the rollout interface,
reward); rollout and learner never import ray, each other or reasoning; reward imports
neither torch nor ray; configs/typed.py is a leaf every package may use. Generic code
reaches Countdown only through the task registry (reasoning/tasks/).
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
    "learner": {"ray", "actors", "rollout", "reasoning"},
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


ROLLOUT_INTERFACE = {"rollout", "rollout.engine"}
"""What reasoning/ may import of rollout/: the Engine protocol and its types, not a backend."""


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_reasoning_uses_only_the_rollout_interface():
    offenders = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sorted((REPO / "reasoning").rglob("*.py"))
        for module in sorted(imported_modules(path))
        if module.split(".")[0] == "rollout" and module not in ROLLOUT_INTERFACE
    ]
    assert not offenders, "\n".join(offenders)


GENERIC = ("actors", "learner", "reasoning/controllers", "reasoning/eval", "reasoning/multipath",
           "reasoning/episode.py", "reasoning/episode_table.py")  # fmt: skip


def test_generic_code_reaches_countdown_only_through_the_task_registry():
    offenders = []
    for place in GENERIC:
        target = REPO / place
        for path in sorted(target.rglob("*.py") if target.is_dir() else [target]):
            bad = {m for m in imported_modules(path) if m.startswith("reasoning.countdown") or m == "reward.countdown"}
            bad |= {"verify_countdown"} if "verify_countdown" in path.read_text(encoding="utf-8") else set()
            if bad:
                offenders.append(f"{path.relative_to(REPO)}: {', '.join(sorted(bad))}")
    assert not offenders, "\n".join(offenders)
