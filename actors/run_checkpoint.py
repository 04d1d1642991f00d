"""The training loop's checkpoint: everything `treadle train --resume` needs to go on.

RUN/checkpoints/step-N/ holds, for learner version N:

- `learner.pt`: the learner's weights, optimizer states, version and RNG states, and
  `policy/`: the same weights as a Hugging Face model directory (for `treadle eval`);
  both written by the learner (`LearnerActor.save_state`).
- `buffer.json`: the stream buffer's state (counters, the ticket cursor, which is also
  the data cursor since group g samples problem g, and every open group's metadata) plus
  the episode id of every buffered episode of a complete group.
- `episodes.parquet`: those buffered episodes' thread rows (the episode table), so they
  are trained after the resume exactly once.
- `loop.json`: the driver's own state (evaluations so far, elapsed time).
- `manifest.json`: size and SHA-256 of every file (learner/manifest.py).

The directory is built under a temporary name and renamed into place after its manifest
is written, so a crash leaves the previous checkpoint intact; loading verifies the
manifest first and names any missing, truncated or corrupt file. Plain Python and
pyarrow; the driver does the Ray calls.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from learner.checkpoint import latest_checkpoint, prune_checkpoints
from learner.manifest import ManifestError, commit_directory, temporary_directory, verify_manifest

BUFFER = "buffer.json"
EPISODES = "episodes.parquet"
LOOP = "loop.json"
LEARNER = "learner.pt"
POLICY = "policy"

Key = tuple[int, int]  # (ticket_id, sample_index)


@dataclass
class LoopCheckpoint:
    version: int
    buffer: dict[str, Any]
    """StreamBuffer.state_dict()."""
    episode_ids: dict[Key, str]
    """The episode id behind every key of StreamBuffer.restore_keys(buffer)."""
    episodes: pa.Table
    """Thread rows of exactly those episodes."""
    loop: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None
    """Where it was loaded from; the learner reads LEARNER from here."""


def checkpoint_path(checkpoints_dir: Path, version: int) -> Path:
    return Path(checkpoints_dir) / f"step-{version}"


def begin(checkpoints_dir: Path, version: int) -> Path:
    """A fresh temporary directory for the checkpoint of `version`; the learner writes into it."""
    return temporary_directory(checkpoint_path(checkpoints_dir, version))


def commit(tmp: Path, checkpoints_dir: Path, state: LoopCheckpoint, keep: int) -> Path:
    """Add the buffer, episodes and loop state to `tmp`, write the manifest, rename, prune."""
    wanted = set(state.episode_ids.values())
    rows = state.episodes.filter(pc.is_in(state.episodes.column("episode_id"), pa.array(sorted(wanted), type=pa.string())))
    found = set(rows.column("episode_id").to_pylist())
    if found != wanted:
        raise ValueError(f"checkpoint {state.version}: no thread rows for buffered episodes {sorted(wanted - found)}")
    pq.write_table(rows, tmp / EPISODES)
    ids = [[ticket, index, episode] for (ticket, index), episode in sorted(state.episode_ids.items())]
    (tmp / BUFFER).write_text(json.dumps({"state": state.buffer, "episode_ids": ids}) + "\n")
    (tmp / LOOP).write_text(json.dumps({"version": state.version, **state.loop}) + "\n")
    for required in (LEARNER, POLICY):
        if not (tmp / required).exists():
            raise ValueError(f"{tmp / required}: the learner did not write it")
    directory = commit_directory(tmp, checkpoint_path(checkpoints_dir, state.version), {"version": state.version})
    prune_checkpoints(checkpoints_dir, keep)
    return directory


def load(directory: Path) -> LoopCheckpoint:
    """Verify `directory`'s manifest and read it back; raises ManifestError naming the file."""
    directory = Path(directory)
    verify_manifest(directory)
    buffer = json.loads((directory / BUFFER).read_text())
    loop = json.loads((directory / LOOP).read_text())
    episodes = pq.read_table(directory / EPISODES)
    episode_ids = {(int(t), int(i)): str(e) for t, i, e in buffer["episode_ids"]}
    return LoopCheckpoint(int(loop.pop("version")), buffer["state"], episode_ids, episodes, loop, directory)


def latest_or_none(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run directory, or None."""
    return latest_checkpoint(Path(run_dir) / "checkpoints")


def latest(run_dir: Path) -> Path:
    """The newest checkpoint of a run directory; a clear error when there is none."""
    found = latest_or_none(run_dir)
    if found is None:
        raise ManifestError(f"{Path(run_dir) / 'checkpoints'}: no step-N checkpoint to resume from")
    return found


def group_tables(state: LoopCheckpoint) -> dict[int, tuple[pa.Table, dict[int, str]]]:
    """Per buffered ticket: its episodes' thread rows and {sample_index: episode_id}."""
    by_ticket: dict[int, dict[int, str]] = {}
    for (ticket, index), episode in state.episode_ids.items():
        by_ticket.setdefault(ticket, {})[index] = episode
    column = state.episodes.column("episode_id")
    return {
        ticket: (state.episodes.filter(pc.is_in(column, pa.array(sorted(ids.values()), type=pa.string()))), ids)
        for ticket, ids in by_ticket.items()
    }
