"""`treadle train --resume`: stop after 2 steps (or at a SIGTERM), go on, and count every episode.

The first run checkpoints the loop after each step; the resumed run must train the
episodes buffered in the step-2 checkpoint first (FIFO, before anything generated after
the resume), never train an episode twice, and keep the conservation counters balanced
across the resume (the groups in flight at the checkpoint are counted as dropped with
reason "resume"). Staleness 5 leaves no room for stale drops in 4 steps (nor at the
final version), so every restored episode is accounted for by name.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from actors.run_log import read_jsonl

REPO = Path(__file__).resolve().parents[2]


def treadle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actors.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_resume_trains_the_buffered_episodes_once_and_loses_none(tmp_path):
    run_dir = tmp_path / "rl"
    first = treadle(
        "train", "configs/countdown-3-rl-apr.yaml", "train.steps=2", "train.batch_groups=2", "rl.group_size=2",
        "train.max_new_tokens=96", "train.max_staleness=5", "train.dashboard=false", "train.object_store_mb=200",
        "train.eval_every=0", "train.checkpoint_every=1", f"run_dir={run_dir}",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = run_dir / "checkpoints" / "step-2"
    saved = json.loads((checkpoint / "buffer.json").read_text())
    restored = [episode for _, _, episode in saved["episode_ids"]]  # ticket order, then sample index
    assert restored, "the checkpoint should hold buffered episodes (the workers run ahead at staleness 3)"
    (run_dir / "train_metrics.jsonl").open("a").write('{"version": 3, "note": "written after the checkpoint"}\n')

    resumed = treadle("train", "--resume", str(run_dir), "train.steps=4")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ledger = read_jsonl(run_dir / "consumed.jsonl")
    assert [line["version"] for line in ledger] == [1, 2, 3, 4]  # the stray line of step 3 was replaced
    trained = [e["episode_id"] for line in ledger for e in line["episodes"]]
    assert len(trained) == 16 and len(set(trained)) == 16  # 2 groups of 2 per step, none twice
    after_resume = [e["episode_id"] for line in ledger[2:] for e in line["episodes"]]
    assert after_resume[: len(restored)] == restored[: len(after_resume)]  # buffered episodes first, in order
    assert all(e["lag"] <= 5 for line in ledger for e in line["episodes"])

    metrics = read_jsonl(run_dir / "train_metrics.jsonl")
    assert [m["version"] for m in metrics] == [1, 2, 3, 4]
    final = json.loads((run_dir / "checkpoints" / "step-4" / "buffer.json").read_text())["state"]
    dropped = final["dropped_by_reason"]
    assert set(dropped) <= {"resume"} and final["num_consumed"] == 16
    buffered = sum(len(g["episodes"]) for g in final["groups"])
    in_flight = sum(g["ticket"]["group_size"] - len(g["episodes"]) for g in final["groups"])
    assert final["num_admitted"] == 16 + sum(dropped.values()) + buffered + in_flight
    # Problems continue from the data cursor: no group's ticket (= problem draw) repeats.
    tickets = [e["ticket"] for line in ledger for e in line["episodes"]]
    assert len(set(tickets)) == 8


def test_sigterm_ends_the_loop_after_its_step_with_a_checkpoint_that_resume_goes_on_from(tmp_path):
    """What `ray job stop` sends: the step in progress finishes, the loop is checkpointed
    (here it would not be otherwise: checkpoint_every=0), and a resume continues the ledger."""
    run_dir = tmp_path / "rl"
    process = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "train", "configs/countdown-3-rl-apr.yaml", "train.steps=200",
         "train.batch_groups=2", "rl.group_size=2", "train.max_new_tokens=96", "train.max_staleness=5",
         "train.dashboard=false", "train.object_store_mb=200", "train.eval_every=0", "train.checkpoint_every=0",
         f"run_dir={run_dir}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = run_dir / "train_metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and read_jsonl(metrics)) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    steps = [m["version"] for m in read_jsonl(metrics)]
    assert steps == list(range(1, len(steps) + 1)) and 0 < len(steps) < 200
    assert f"stopped by SIGTERM at step {steps[-1]}" in out
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"step-{steps[-1]}"]
    assert not (run_dir / "final").exists()

    resumed = treadle("train", "--resume", str(run_dir), f"train.steps={steps[-1] + 1}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ledger = read_jsonl(run_dir / "consumed.jsonl")
    assert [line["version"] for line in ledger] == list(range(1, steps[-1] + 2))
    trained = [e["episode_id"] for line in ledger for e in line["episodes"]]
    assert len(trained) == 4 * len(ledger) == len(set(trained))  # 2 groups of 2 a step, none twice
    assert (run_dir / "final").is_dir()
