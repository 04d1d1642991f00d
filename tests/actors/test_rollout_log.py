"""The rollout log: closed parts are readable, an unclosed part does not break the rest."""
from __future__ import annotations

from actors.rollout_log import RolloutLog, read_rollout_logs
from reasoning.episode_table import to_table
from tests.episode_rows import thread_row


def batch(episode_id: str):
    row = thread_row(episode_id, token_ids=[5, 6], trainable=[False, True], logprobs=[-0.1], versions=[0])
    return to_table([row]).to_batches()[0]


def test_parts_rotate_on_weight_updates_and_survive_a_crash(tmp_path):
    log = RolloutLog(tmp_path / "rollout-0")
    log.append(batch("a"))
    log.append(batch("b"))
    assert log.rotate().name == "part-000000.parquet"
    assert log.rotate() is None  # nothing new since
    log.append(batch("c"))  # never closed: a killed worker
    assert read_rollout_logs(tmp_path).column("episode_id").to_pylist() == ["a", "b"]

    resumed = RolloutLog(tmp_path / "rollout-0")  # a resumed run appends after the last part
    resumed.append(batch("d"))
    assert resumed.close().name == "part-000001.parquet"
    assert read_rollout_logs(tmp_path).column("episode_id").to_pylist() == ["a", "b", "d"]


def test_no_parts_is_an_empty_table(tmp_path):
    assert read_rollout_logs(tmp_path).num_rows == 0
