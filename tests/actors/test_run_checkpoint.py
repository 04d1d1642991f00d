"""The loop checkpoint round trip, without Ray: buffer state, episode rows, loop state."""
from __future__ import annotations

import pytest

from actors.run_checkpoint import LoopCheckpoint, begin, commit, group_tables, latest, load
from actors.stream_buffer import EpisodeMeta, StreamBuffer
from learner.manifest import ManifestError
from reasoning.episode_table import to_table
from tests.episode_rows import thread_row


def row(episode_id: str) -> dict:
    return thread_row(episode_id)


def learner_files(tmp):
    (tmp / "learner.pt").write_bytes(b"state")
    (tmp / "policy").mkdir()
    (tmp / "policy" / "config.json").write_text("{}")


def test_buffered_groups_survive_a_round_trip(tmp_path):
    buffer = StreamBuffer(max_staleness=1, batch_size=2, group_size=2)
    complete, partial = buffer.try_admit("w"), buffer.try_admit("w")
    for i in range(2):
        buffer.put(complete, f"h{i}", EpisodeMeta("g0", i, 2, 0, 0, 1.0))
    buffer.put(partial, "h2", EpisodeMeta("g1", 0, 2, 0, 0, 0.0))
    handles = buffer.buffered_handles()
    assert handles == {(0, 0): "h0", (0, 1): "h1"}  # only complete groups are kept
    ids = {key: f"e{key[1]}" for key in handles}
    table = to_table([row("e0"), row("e1"), row("other")])
    tmp = begin(tmp_path / "checkpoints", 3)
    learner_files(tmp)
    commit(tmp, tmp_path / "checkpoints", LoopCheckpoint(3, buffer.state_dict(), ids, table, {"evaluations": []}), keep=2)

    state = load(latest(tmp_path))
    assert state.version == 3 and state.episodes.num_rows == 2  # the unbuffered row is not kept
    ((ticket, (rows, by_index)),) = group_tables(state).items()
    assert ticket == 0 and by_index == {0: "e0", 1: "e1"} and sorted(rows.column("episode_id").to_pylist()) == ["e0", "e1"]
    fresh = StreamBuffer(max_staleness=1, batch_size=2, group_size=2)
    fresh.load_state_dict(state.buffer, {(ticket, index): f"restored-{index}" for index in by_index})
    assert [e.handle for e in fresh.take_batch(0)] == ["restored-0", "restored-1"]
    assert fresh.metrics()["dropped_by_reason"] == {"resume": 2}  # the partial group


def test_missing_learner_files_and_missing_checkpoints_are_errors(tmp_path):
    tmp = begin(tmp_path / "checkpoints", 1)
    empty = StreamBuffer(max_staleness=0, batch_size=1, group_size=1).state_dict()
    with pytest.raises(ValueError, match="learner.pt: the learner did not write it"):
        commit(tmp, tmp_path / "checkpoints", LoopCheckpoint(1, empty, {}, to_table([row("x")]), {}), keep=1)
    with pytest.raises(ManifestError, match="no step-N checkpoint to resume from"):
        latest(tmp_path)
    with pytest.raises(ValueError, match=r"no thread rows for buffered episodes \['e9'\]"):
        learner_files(tmp)
        commit(tmp, tmp_path / "checkpoints", LoopCheckpoint(1, empty, {(0, 0): "e9"}, to_table([row("x")]), {}), keep=1)
