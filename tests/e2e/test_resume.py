"""`treadle train --resume`: stop after 2 steps, go on to 4, and count every episode.

The first run checkpoints the loop after each step; the resumed run must train the
episodes buffered in the step-2 checkpoint first (FIFO, before anything generated after
the resume), never train an episode twice, and keep the conservation counters balanced
across the resume (the groups in flight at the checkpoint are counted as dropped with
reason "resume"). Staleness 5 leaves no room for stale drops in 4 steps (nor at the
final version), so every restored episode is accounted for by name.
"""
from __future__ import annotations

import json
import subprocess
import sys
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

