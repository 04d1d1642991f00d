"""`treadle train CONFIG [key=value ...]` or `treadle train --resume RUN_DIR [key=value ...]`.

Asynchronous RL on Ray. Starts a local Ray on 127.0.0.1 when RAY_ADDRESS is unset, or
joins the cluster it names (as under `ray job submit`). The whole config is validated
before Ray starts. With --resume the run directory's own config.yaml is loaded (the
overrides apply on top, e.g. a larger train.steps) and the loop goes on from the newest
checkpoint in RUN_DIR/checkpoints: weights, optimizer, version, RNG, the data cursor and
the buffered episodes, so no episode is lost or trained twice. A relative run directory
resolves against $TREADLE_RUNS when set; under `ray job submit --working-dir` without it,
only an absolute run_dir is accepted (actors/run_location.py). The last lines name the
run's files by absolute path.
"""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="asynchronous RL: rollout workers, a staleness-bounded buffer and a learner on Ray",
        description=__doc__.split("\n\n", 1)[1],
        usage="treadle train CONFIG [key.sub=value ...] | treadle train --resume RUN_DIR [key.sub=value ...]",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="go on from the newest checkpoint of this run directory")
    p.add_argument(
        "arguments", nargs="*", metavar="CONFIG key.sub=value",
        help="experiment YAML (e.g. configs/countdown-3-rl-apr.yaml), then overrides such as train.steps=5",
    )  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import signal
    from pathlib import Path

    from actors.driver import CONFIG_FILE, run_training
    from actors.errors import UsageError
    from actors.run_location import RunLocationError, resolve_run_dir
    from configs.experiment import load_config, run_dir
    from learner.manifest import ManifestError

    if args.resume:
        try:
            directory = resolve_run_dir(Path(args.resume))
        except RunLocationError as e:
            raise UsageError(str(e).replace("run_dir:", "--resume:", 1)) from None
        if not (directory / CONFIG_FILE).is_file():
            raise UsageError(f"{directory / CONFIG_FILE}: missing; {directory} is not a treadle train run directory")
        overrides = [*args.arguments, f"run_dir={directory}"]
        config = load_config(directory / CONFIG_FILE, overrides)
        try:
            result = run_training(config, directory, resume=True)
        except ManifestError as e:
            raise UsageError(f"cannot resume: {e}") from None
    else:
        if not args.arguments or "=" in args.arguments[0]:
            raise UsageError("treadle train needs a CONFIG file first (or --resume RUN_DIR)")
        config = load_config(args.arguments[0], args.arguments[1:])
        try:
            directory = resolve_run_dir(run_dir(config))
        except RunLocationError as e:
            raise UsageError(str(e)) from None
        result = run_training(config, directory)
    summary = {k: v for k, v in result.items() if k not in ("evaluations", "token_staleness")}
    print(json.dumps(summary))
    print(f"run directory: {directory}")
    for name in ("report", "metrics", "ledger", "checkpoint", "final"):
        if name in result:
            print(f"{name}: {Path(result[name]).resolve()}")
    if "stopped" in result:
        print(f"stopped by {result['stopped']} at step {result['version']}: go on with `treadle train --resume {directory}`")
        return 128 + signal.Signals[result["stopped"]].value  # as a process ended by that signal reports it
    return 0

