"""Where a run writes: relative run directories under `ray job submit` (actors/run_location.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.run_location import RunLocationError, resolve_run_dir

IN_A_JOB = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_x.zip"}})}


def test_absolute_directories_stay_as_they_are():
    assert resolve_run_dir(Path("/data/runs/x"), IN_A_JOB) == Path("/data/runs/x")


def test_a_relative_directory_resolves_against_treadle_runs_then_the_working_directory(tmp_path, monkeypatch):
    assert resolve_run_dir(Path("runs/x"), {**IN_A_JOB, "TREADLE_RUNS": str(tmp_path)}) == tmp_path / "runs" / "x"
    monkeypatch.chdir(tmp_path)
    assert resolve_run_dir(Path("runs/x"), {}) == tmp_path / "runs" / "x"
    # A job without an uploaded working directory runs where the user started it.
    assert resolve_run_dir(Path("runs/x"), {"RAY_JOB_CONFIG_JSON_ENV_VAR": '{"runtime_env": {}}'}) == tmp_path / "runs" / "x"


def test_a_relative_directory_in_rays_copy_of_the_working_directory_is_refused():
    with pytest.raises(RunLocationError, match="run_dir: runs/x is relative.*TREADLE_RUNS"):
        resolve_run_dir(Path("runs/x"), IN_A_JOB)
