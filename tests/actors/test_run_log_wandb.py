"""`train.loggers: [jsonl, wandb]` (actors/run_log.py) in W&B's offline mode: no account,
no network; the run's local .wandb file holds every step's metrics, and a resumed run goes
on in the same W&B run. Skipped when the optional extra is not installed."""
from __future__ import annotations

import struct
import time

import pytest

from actors.run_log import METRICS, RunLog, read_jsonl
from configs.experiment import load_config
from configs.typed import ConfigError

wandb = pytest.importorskip("wandb", reason="the optional extra treadle[wandb] is not installed")


def read_history(path, timeout_s: float = 30.0) -> list[dict[str, str]]:
    """The history rows of a .wandb file, once it holds the run's exit record (W&B's core
    process may still be writing it when `finish` returns)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_records(path)
        if "exit" in [kind for kind, _ in records] or time.monotonic() > deadline:
            return [row for kind, row in records if kind == "history"]
        time.sleep(0.2)


def read_records(path) -> list[tuple[str, dict[str, str]]]:
    """(kind, history items) of each record of a .wandb file: W&B's leveldb-style log (a 7-byte
    file header, then 32 KiB blocks of chunks, each with a 7-byte header: crc, length, type)
    of protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pending, records = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # block trailer padding
            pos += left
            continue
        if pos + 7 + length > len(data):  # a chunk still being written
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            records.append((record.WhichOneof("record_type"), items))
    return records


def step(version: int) -> dict:
    return {"version": version, "reward": 0.25 * version, "loss": 1.0 / version, "eval_accuracy": None,
            "buffer": {"admitted": 8 * version, "consumed": 4 * version}, "dropped_by_reason": {"stale": version}}  # fmt: skip


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-files"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    return tmp_path / "wandb-files"


def test_offline_run_files_hold_every_steps_metrics_and_a_resume_continues_the_run(tmp_path, offline):
    run_dir = tmp_path / "rl-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("name: rl-run\ntrain:\n  steps: 4\n")
    log = RunLog(run_dir, loggers=["jsonl", "wandb"])
    for version in (1, 2, 3):
        log.step(step(version), [])
    log.close()
    [first] = sorted(offline.glob("wandb/offline-run-*/run-*.wandb"))
    rows = read_history(first)
    assert [int(row["_step"]) for row in rows] == [1, 2, 3]
    assert [float(row["train/reward"]) for row in rows] == [0.25, 0.5, 0.75]
    assert [float(row["buffer/admitted"]) for row in rows] == [8.0, 16.0, 24.0]
    assert [float(row["buffer/dropped_stale"]) for row in rows] == [1.0, 2.0, 3.0]
    assert all("train/eval_accuracy" not in row for row in rows)  # None: not logged
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    assert first.name == f"run-{run_id}.wandb"

    log = RunLog(run_dir, resume_version=2, loggers=["jsonl", "wandb"])  # step 3 is undone and redone
    log.step(step(3), [])
    log.step(step(4), [])
    log.close()
    runs = sorted(offline.glob("wandb/offline-run-*/run-*.wandb"))
    assert {path.name for path in runs} == {f"run-{run_id}.wandb"} and len(runs) == 2
    [second] = [path for path in runs if path != first]
    assert [int(row["_step"]) for row in read_history(second)] == [3, 4]
    assert [line["version"] for line in read_jsonl(run_dir / METRICS)] == [1, 2, 3, 4]  # jsonl always on


def test_loggers_are_validated_and_jsonl_is_required():
    config = load_config("configs/countdown-3-rl-apr.yaml", [])
    assert config.train.loggers == ["jsonl", "tensorboard"]
    assert load_config("configs/countdown-3-rl-apr.yaml", ["train.loggers=[jsonl,wandb]"]).train.loggers == ["jsonl", "wandb"]
    with pytest.raises(ConfigError, match=r"train\.loggers\[1\]: must be one of jsonl, tensorboard, wandb"):
        load_config("configs/countdown-3-rl-apr.yaml", ["train.loggers=[jsonl,mlflow]"])
    with pytest.raises(ConfigError, match=r"train\.loggers: must include jsonl"):
        load_config("configs/countdown-3-rl-apr.yaml", ["train.loggers=[tensorboard]"])
