"""The episode table: SFT traces and controller episodes write the same schema and read back."""
from __future__ import annotations

import asyncio
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasoning.controllers.apr import AprController
from reasoning.controllers.limits import ThreadLimits
from reasoning.countdown.config import TraceConfig
from reasoning.countdown.problems import Problem
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.countdown.trace_tokens import trace_rows
from reasoning.episode_table import THREAD_SCHEMA, EpisodeTableError, read_threads, to_table, write_threads
from reasoning.tasks import make_task
from rollout.engine import SamplingParams
from tests.scripted_engine import ScriptedEngine

PROBLEM = Problem("p", (3, 12, 19), 34)


def test_traces_round_trip(tmp_path):
    rows, _ = trace_rows([PROBLEM], TraceConfig(kind="apr"), build_tokenizer())
    write_threads(tmp_path / "t.parquet", rows)
    table = read_threads(tmp_path / "t.parquet")
    assert table.schema == THREAD_SCHEMA and table.num_rows == len(rows)
    assert table.column("token_ids").to_pylist() == [r["token_ids"] for r in rows]
    assert table.column("logprobs").null_count == len(rows)  # SFT traces have no behaviour policy


def test_controller_episodes_round_trip(tmp_path):
    tokenizer = build_tokenizer()
    engine = ScriptedEngine(tokenizer, lambda c: "<answer>19+3+12</answer>")
    controller = AprController(engine, tokenizer, make_task("countdown"), SamplingParams(max_tokens=32, temperature=0), ThreadLimits())
    episode = asyncio.run(controller.run(PROBLEM))
    write_threads(tmp_path / "e.parquet", episode.rows())
    (row,) = read_threads(tmp_path / "e.parquet").to_pylist()
    assert row["reward"] == 1.0 and row["finish_reason"] == "stop_token"
    assert len(row["trainable"]) == len(row["token_ids"]) == row["num_prompt_tokens"] + len(row["logprobs"])


def test_missing_column_and_wrong_type_are_named(tmp_path):
    pq.write_table(pa.table({"episode_id": ["a"], "group_id": ["g"]}), tmp_path / "m.parquet")
    with pytest.raises(EpisodeTableError, match="missing column.*token_ids.*version 2"):
        read_threads(tmp_path / "m.parquet")
    rows, _ = trace_rows([PROBLEM], TraceConfig(kind="sos"), build_tokenizer())
    table = to_table(rows).drop_columns(["logprobs"]).append_column("logprobs", pa.array([["x"]], pa.list_(pa.string())))
    pq.write_table(table, tmp_path / "w.parquet")
    with pytest.raises(EpisodeTableError, match="types"):
        read_threads(tmp_path / "w.parquet")
    with pytest.raises(EpisodeTableError, match="no such file"):
        read_threads(tmp_path / "nope.parquet")


def test_rows_carry_the_task_neutral_version_2_columns(tmp_path):
    rows, _ = trace_rows([PROBLEM], TraceConfig(kind="apr", sub_calls_min=2, sub_calls_max=2), build_tokenizer())
    write_threads(tmp_path / "t.parquet", rows)
    assert pq.read_schema(tmp_path / "t.parquet").metadata[b"treadle.episode_table.version"] == b"2"
    table = read_threads(tmp_path / "t.parquet").to_pylist()
    root = table[0]
    assert root["task"] == "countdown" and root["group_id"] == root["episode_id"] == "p/apr"
    assert json.loads(root["problem"]) == {"id": "p", "numbers": [3, 12, 19], "target": 34}
    assert root["spawn_index"] == -1 and {r["spawn_index"] for r in table[1:]} <= {0, 1, 2, 3}
    trained = sum(sum(r["trainable"]) for r in table)
    assert all(r["episode_total_tokens"] == trained for r in table)
    assert 0 < root["episode_critical_path_tokens"] < trained  # children of one spawn run side by side


def test_a_version_1_file_is_read_and_converted(tmp_path):
    # The version-1 schema, as treadle wrote it before: Countdown columns, groups by problem_id.
    v1 = {
        "episode_id": ["p#3/0", "p#3/0"], "problem_id": ["p#3", "p#3"], "numbers": [[3, 12, 19]] * 2,
        "target": [34, 34], "thread_id": [0, 1], "parent_id": [-1, 0], "depth": [0, 1], "role": ["root", "child"],
        "token_ids": [[1, 5, 6, 7], [1, 5, 8]], "num_prompt_tokens": [2, 2],
        "trainable": [[False, False, True, True], [False, False, True]], "logprobs": [[-0.1, -0.2], [-0.3]],
        "versions": [[0, 0], [0]], "finish_reason": ["stop_token"] * 2, "reward": [1.0, 1.0],
    }  # fmt: skip
    pq.write_table(pa.table(v1), tmp_path / "v1.parquet")
    rows = read_threads(tmp_path / "v1.parquet").to_pylist()
    assert [r["group_id"] for r in rows] == ["p#3", "p#3"] and {r["task"] for r in rows} == {"countdown"}
    assert json.loads(rows[0]["problem"]) == {"id": "p", "numbers": [3, 12, 19], "target": 34}
    assert [r["spawn_index"] for r in rows] == [-1, None]  # version 1 did not record a child's spawn
    assert rows[0]["episode_total_tokens"] == 3 and rows[0]["episode_critical_path_tokens"] is None


def test_an_unknown_version_is_refused_naming_it(tmp_path):
    rows, _ = trace_rows([PROBLEM], TraceConfig(kind="sos"), build_tokenizer())
    table = to_table(rows)
    pq.write_table(table.replace_schema_metadata({b"treadle.episode_table.version": b"7"}), tmp_path / "v7.parquet")
    with pytest.raises(EpisodeTableError, match="version 7"):
        read_threads(tmp_path / "v7.parquet")
