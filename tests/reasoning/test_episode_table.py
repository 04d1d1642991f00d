"""The episode table: SFT traces and controller episodes write the same schema and read back."""
from __future__ import annotations

import asyncio

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasoning.controllers.apr import AprController
from reasoning.controllers.limits import ThreadLimits
from reasoning.countdown.config import TraceConfig
from reasoning.countdown.problems import Problem
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.countdown.trace_tokens import trace_rows
from reasoning.episode_table import THREAD_SCHEMA, EpisodeTableError, read_threads, write_threads
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
    controller = AprController(engine, tokenizer, SamplingParams(max_tokens=32, temperature=0), ThreadLimits())
    episode = asyncio.run(controller.run(PROBLEM))
    write_threads(tmp_path / "e.parquet", episode.rows())
    (row,) = read_threads(tmp_path / "e.parquet").to_pylist()
    assert row["reward"] == 1.0 and row["finish_reason"] == "stop_token"
    assert len(row["trainable"]) == len(row["token_ids"]) == row["num_prompt_tokens"] + len(row["logprobs"])


def test_missing_column_and_wrong_type_are_named(tmp_path):
    pq.write_table(pa.table({"episode_id": ["a"]}), tmp_path / "m.parquet")
    with pytest.raises(EpisodeTableError, match="missing column.*token_ids"):
        read_threads(tmp_path / "m.parquet")
    rows, _ = trace_rows([PROBLEM], TraceConfig(kind="sos"), build_tokenizer())
    table = pa.table({name: [r[name] for r in rows] for name in THREAD_SCHEMA.names if name not in ("logprobs", "versions", "finish_reason", "reward")})
    table = table.append_column("logprobs", pa.array([["x"]], pa.list_(pa.string())))
    for name in ("versions", "finish_reason", "reward"):
        table = table.append_column(name, pa.array([None], THREAD_SCHEMA.field(name).type))
    pq.write_table(table, tmp_path / "w.parquet")
    with pytest.raises(EpisodeTableError, match="types"):
        read_threads(tmp_path / "w.parquet")
    with pytest.raises(EpisodeTableError, match="no such file"):
        read_threads(tmp_path / "nope.parquet")
