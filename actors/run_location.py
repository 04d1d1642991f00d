"""Where a run writes: an absolute path the user can reach, also under `ray job submit`.

`ray job submit --working-dir .` runs the entrypoint in Ray's copy of the working
directory (under the Ray session's runtime_resources/), which the submitting user never
looks at and successive jobs share. So a relative `run_dir` (or the default
runs/<name>) resolves:
- against `$TREADLE_RUNS` when it is set (e.g. passed with
  `--runtime-env-json '{"env_vars": {"TREADLE_RUNS": "/home/me/treadle"}}'`);
- else, inside a Ray job that uploaded a working directory, not at all: the run is
  refused with a message that says how to name an absolute place;
- else against the current directory, as any command line tool does.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

RUNS_ENV = "TREADLE_RUNS"
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for the entrypoint


class RunLocationError(ValueError):
    """A relative run directory that would land in Ray's copy of the working directory."""


def resolve_run_dir(run_dir: Path, environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if run_dir.is_absolute():
        return run_dir
    if environ.get(RUNS_ENV):
        return (Path(environ[RUNS_ENV]).expanduser() / run_dir).resolve()
    if _in_uploaded_working_dir(environ):
        raise RunLocationError(
            f"run_dir: {run_dir} is relative, and this Ray job runs in Ray's copy of the working directory "
            f"({Path.cwd()}), which the submitting machine does not see; give an absolute run_dir=/path, or set "
            f'{RUNS_ENV} for the job: --runtime-env-json \'{{"env_vars": {{"{RUNS_ENV}": "/path"}}}}\''
        )
    return run_dir.resolve()


def _in_uploaded_working_dir(environ: dict[str, str]) -> bool:
    try:
        job = json.loads(environ.get(JOB_CONFIG_ENV) or "{}")
    except ValueError:
        return False
    runtime_env = job.get("runtime_env") if isinstance(job, dict) else None
    return isinstance(runtime_env, dict) and bool(runtime_env.get("working_dir"))
