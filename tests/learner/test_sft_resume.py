"""`treadle sft` end to end on a tiny run: loss falls, checkpoints load, resume is lossless."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from learner.checkpoint import load_trained_keys
from learner.sft import SequenceStream

REPO = Path(__file__).resolve().parents[2]
SMALL_RUN = [
    "task.countdown.num_train=300", "task.countdown.num_val=20", "sft.steps=8", "sft.warmup_steps=2", "sft.rows=2",
    "sft.seq_len=256", "sft.log_every=1", "sft.checkpoint_every=4", "sft.num_threads=1",
]  # fmt: skip


def sft(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", "sft", "configs/countdown-3-sft-sos.yaml", *SMALL_RUN,
         f"run_dir={run_dir}", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("sft") / "full"
    result = sft(run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def test_loss_falls_and_final_checkpoint_is_complete(full_run):
    metrics = [json.loads(line) for line in (full_run / "sft_metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 9))
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    final = full_run / "final"
    assert {"config.json", "model.safetensors", "tokenizer.json", "trained_problems.json.gz"} <= {p.name for p in final.iterdir()}
    keys = load_trained_keys(final)
    assert len(keys) == 300 and all(list(numbers) == sorted(numbers) for numbers, _ in keys)
    assert (full_run / "checkpoints" / "step-4" / "trainer_state.pt").is_file()


def test_refuses_to_overwrite_a_run(full_run):
    result = sft(full_run)
    assert result.returncode == 2 and "pass --resume" in result.stderr


def test_resume_gives_the_same_weights(full_run, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(full_run, resumed)
    shutil.rmtree(resumed / "final")
    (resumed / "sft_metrics.jsonl").unlink()
    result = sft(resumed, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from" in result.stdout
    a = load_file(full_run / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (resumed / "sft_metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 6, 7, 8]


def test_stream_cursor_continues_the_same_order():
    sequences = [([i, i + 1], [True, True]) for i in range(10)]
    straight = SequenceStream(sequences, seed=3)
    first = [straight.next_batch(seq_len=4, rows=1).input_ids.tolist() for _ in range(7)]
    interrupted = SequenceStream(sequences, seed=3)
    head = [interrupted.next_batch(seq_len=4, rows=1).input_ids.tolist() for _ in range(3)]
    resumed = SequenceStream(sequences, seed=3, **interrupted.cursor)
    tail = [resumed.next_batch(seq_len=4, rows=1).input_ids.tolist() for _ in range(4)]
    assert head + tail == first
    assert resumed.epoch == 1  # 10 sequences, 2 a batch: the 7th batch starts epoch 1
