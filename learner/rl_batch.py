"""From episode rows to packed RL micro-batches: group advantages, broadcast, alignment.

Input is thread rows of the episode table, version 2 (reasoning/episode_table.py), as
dicts or an Arrow table. Grouping rules:
  - an episode is all rows sharing an `episode_id`; its reward is the rows' `reward`
    (every thread of an episode carries the same one);
  - a group is all episodes sharing a `group_id` (the k episodes sampled for one
    problem under one ticket); the estimator (learner/advantages.py) runs over each
    group's rewards.
With `parallel_bonus > 0` the ThreadWeaver bonus is added to each episode's reward
before the estimator, so it rewards parallelism relative to the rest of the group; it
reads each episode's `episode_total_tokens` and `episode_critical_path_tokens`. With
`overlong_buffer > 0` DAPO's overlong penalty is added the same way; an episode's length
is its critical path (`episode_critical_path_tokens`): the longest chain of tokens
generated one after another, which is the whole output of a sequential episode (DAPO's
response length) and, for a thread tree, the length a reader waits for. Total tokens
would also punish spawning threads, which the parallel bonus exists to reward.
REINFORCE++ estimators are then normalised over the whole batch, each episode weighted
by its trained tokens (learner/advantages.py `batch_normalize`).

Alignment: position p of a thread predicts token p + 1. So at position p the batch
holds label token_ids[p + 1], loss mask trainable[p + 1], the behaviour logprob and
version of output token j = p + 1 - num_prompt_tokens (row columns `logprobs` and
`versions` are per output token), and the advantage of the thread's episode where the
mask is on (0 elsewhere). Threads with no trainable token are left out; a thread longer
than `seq_len` widens the rows of its batch to its length. Pure numpy: no torch, no model.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from learner.advantages import (
    BATCH_NORMALIZED,
    DEFAULT,
    ESTIMATORS,
    GroupConventions,
    batch_normalize,
    overlong_penalty,
    parallelization_bonus,
)
from learner.packing import IGNORE, PackedBatch, pack
from learner.prefix_tree import Tree, build_tree, label_sources, pack_trees


LAYOUTS = ("packed", "rows", "shared")


class RLBatchError(ValueError):
    """Episode rows the learner cannot train on; names the episode and thread."""


@dataclass
class MicroBatch:
    """One forward pass: packed rows plus per-position arrays, all [rows, seq_len]."""

    packed: PackedBatch  # input_ids, position_ids, segment_ids, labels (IGNORE off the mask)
    behaviour_logprobs: np.ndarray  # float32; logprob of the label under the sampling policy
    advantages: np.ndarray  # float32; the episode's advantage on masked positions, else 0
    loss_mask: np.ndarray  # float32; 1.0 where the label is a trained output token
    episode_index: np.ndarray  # int64; index into RLBatch.episode_ids (0 on padding)
    versions: np.ndarray  # int32; policy version of the label token, -1 off the mask


@dataclass
class RLBatch:
    micro_batches: list[MicroBatch]
    episode_ids: list[str]
    rewards: np.ndarray  # float64 [episodes], as verified (without the bonus or the overlong penalty)
    advantages: np.ndarray  # float64 [episodes]
    overlong_penalty: np.ndarray | None = None  # float64 [episodes], <= 0; None when off

    @property
    def num_trained_tokens(self) -> int:
        return int(sum(mb.loss_mask.sum() for mb in self.micro_batches))


@dataclass(frozen=True)
class Overlong:
    """DAPO's overlong reward shaping (see RLConfig.overlong_buffer); buffer 0 is off."""

    max_tokens: int = 0
    buffer: int = 0
    factor: float = 1.0


def episode_advantages(
    rows: list[dict[str, Any]],
    estimator: str,
    parallel_bonus: float = 0.0,
    *,
    parallel_bonus_cap: float = 1.0,
    conventions: GroupConventions = DEFAULT,
    overlong: Overlong = Overlong(),
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(episode ids in first-seen order, their rewards, their advantages)."""
    bonus = (parallel_bonus, parallel_bonus_cap)
    episode_ids, reward, advantage, _ = _episode_advantages(rows, estimator, bonus, conventions, overlong)
    return episode_ids, reward, advantage


def _episode_advantages(
    rows: list[dict[str, Any]],
    estimator: str,
    parallel_bonus: tuple[float, float],
    conventions: GroupConventions,
    overlong: Overlong,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray | None]:
    """(episode ids, rewards, advantages, overlong penalties or None); `parallel_bonus` is
    (weight, cap)."""
    episode_ids: list[str] = []
    rewards: dict[str, float] = {}
    group_of: dict[str, str] = {}
    tokens: dict[str, tuple[Any, Any]] = {}
    trained: dict[str, int] = {}
    for row in rows:
        eid, reward = row["episode_id"], row["reward"]
        if reward is None:
            raise RLBatchError(f"episode {eid} thread {row['thread_id']}: no reward")
        if eid not in rewards:
            episode_ids.append(eid)
            rewards[eid], group_of[eid] = float(reward), row["group_id"]
            tokens[eid] = (row.get("episode_total_tokens"), row.get("episode_critical_path_tokens"))
        elif rewards[eid] != float(reward) or group_of[eid] != row["group_id"]:
            raise RLBatchError(f"episode {eid}: threads disagree on reward or group")
        trained[eid] = trained.get(eid, 0) + int(sum(row["trainable"][1:]))  # position p trains token p + 1
    reward = np.array([rewards[e] for e in episode_ids], dtype=np.float64)
    shaped = reward.copy()
    if parallel_bonus[0] > 0:
        missing = [e for e in episode_ids if None in tokens[e]]
        if missing:
            raise RLBatchError(f"parallel_bonus needs total and critical-path tokens; missing for {missing[:3]}")
        total, critical = zip(*(tokens[e] for e in episode_ids))
        shaped += parallelization_bonus(reward, total, critical, *parallel_bonus)
    penalty = None
    if overlong.buffer > 0:
        missing = [e for e in episode_ids if tokens[e][1] is None]
        if missing:
            raise RLBatchError(f"overlong_buffer needs critical-path tokens; missing for {missing[:3]}")
        critical = [tokens[e][1] for e in episode_ids]
        penalty = overlong_penalty(critical, overlong.max_tokens, overlong.buffer, overlong.factor)
        shaped += penalty
    advantage = np.zeros_like(reward)
    groups: dict[str, list[int]] = {}
    for i, eid in enumerate(episode_ids):
        groups.setdefault(group_of[eid], []).append(i)
    for members in groups.values():
        advantage[members] = ESTIMATORS[estimator](shaped[members], conventions)
    if estimator in BATCH_NORMALIZED:
        advantage = batch_normalize(advantage, [trained[e] for e in episode_ids])
    return episode_ids, reward, advantage, penalty


def _thread_arrays(row: dict[str, Any], advantage: float) -> tuple[np.ndarray, ...]:
    """Per-position (behaviour logprob, advantage, mask, version) of one thread, shifted by one."""
    trainable = np.asarray(row["trainable"], dtype=bool)
    num_prompt, n = row["num_prompt_tokens"], len(row["token_ids"])
    where = f"episode {row['episode_id']} thread {row['thread_id']}"
    if len(trainable) != n or not 0 < num_prompt <= n:
        raise RLBatchError(f"{where}: {len(trainable)} trainable flags, {num_prompt} prompt tokens, {n} tokens")
    if trainable[:num_prompt].any():
        raise RLBatchError(f"{where}: a prompt token is marked trainable")
    logprobs, versions = row["logprobs"], row["versions"]
    if logprobs is None or len(logprobs) != n - num_prompt or versions is None or len(versions) != n - num_prompt:
        raise RLBatchError(f"{where}: logprobs and versions need one entry per output token ({n - num_prompt})")
    # Token-indexed arrays first (index t = token t), then shifted so index p = target p + 1.
    token_logprob = np.zeros(n, dtype=np.float32)
    token_logprob[num_prompt:] = logprobs
    token_version = np.full(n, -1, dtype=np.int32)
    token_version[num_prompt:] = versions
    mask = np.zeros(n, dtype=np.float32)
    mask[:-1] = trainable[1:]
    behaviour = np.zeros(n, dtype=np.float32)
    behaviour[:-1] = token_logprob[1:] * mask[:-1]
    version = np.full(n, -1, dtype=np.int32)
    version[:-1] = np.where(trainable[1:], token_version[1:], -1)
    return behaviour, mask * np.float32(advantage), mask, version


def _gatherer(where: PackedBatch):
    """values (flat, per position of all threads) -> [rows, seq_len], `fill` on padding."""
    real = where.segment_ids > 0
    take = np.where(real, where.input_ids - 1, 0)

    def gather(values: np.ndarray, fill: float, dtype: Any) -> np.ndarray:
        return np.where(real, values[take], fill).astype(dtype)

    return gather


def _rows_that_fit(ascending_lengths: list[int], token_budget: int) -> int:
    """How many of the next threads (by ascending length) make rows of the last one's width
    within `token_budget` tokens; at least one, however long."""
    count = 1
    while count < len(ascending_lengths) and (count + 1) * ascending_lengths[count] <= token_budget:
        count += 1
    return count


def build_batch(
    rows: Iterable[dict[str, Any]] | pa.Table,
    *,
    estimator: str,
    seq_len: int,
    rows_per_micro_batch: int,
    parallel_bonus: float = 0.0,
    parallel_bonus_cap: float = 1.0,
    layout: str = "packed",
    conventions: GroupConventions = DEFAULT,
    overlong: Overlong = Overlong(),
) -> RLBatch:
    """Advantages per episode, broadcast to every trained token, packed into micro-batches
    (`layout`: see RLConfig.layout)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    rows = rows.to_pylist() if isinstance(rows, pa.Table) else list(rows)
    shaped = _episode_advantages(rows, estimator, (parallel_bonus, parallel_bonus_cap), conventions, overlong)
    episode_ids, rewards, advantages, penalty = shaped
    index_of = {eid: i for i, eid in enumerate(episode_ids)}
    # Packed and shared: threads of one episode stay together so an episode rarely spans
    # micro-batches. Rows: threads of like length share a micro-batch, so rows carry little padding.
    order = (lambda r: len(r["token_ids"])) if layout == "rows" else (lambda r: index_of[r["episode_id"]])
    threads = sorted((r for r in rows if any(r["trainable"])), key=order)
    # A thread longer than seq_len (a rare long one the model wrote) widens this batch's
    # rows to fit it: never truncated, and never a failed step in the middle of a run.
    seq_len = max([seq_len, *(len(r["token_ids"]) for r in threads)])
    # Per-position arrays of all threads, concatenated: thread i covers [starts[i], starts[i+1]).
    per_thread = [_thread_arrays(r, advantages[index_of[r["episode_id"]]]) for r in threads]
    lengths = [len(r["token_ids"]) for r in threads]
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = [np.concatenate([t[k] for t in per_thread]) if threads else np.zeros(0) for k in range(4)]
    flat_episode = np.repeat([index_of[r["episode_id"]] for r in threads], lengths).astype(np.int64)
    if layout == "shared":
        micro_batches = _shared_micro_batches(threads, flat, flat_episode, starts, seq_len, rows_per_micro_batch)
        return RLBatch(micro_batches, episode_ids, rewards, advantages, penalty)
    micro_batches: list[MicroBatch] = []
    one_per_row = layout == "rows"
    first = 0
    while first < len(threads):
        if one_per_row:  # as many of the next (shortest) threads as fit, each in a row as wide as the longest
            num_rows = _rows_that_fit(lengths[first:], rows_per_micro_batch * seq_len)
            chunk, width = threads[first : first + num_rows], lengths[first + num_rows - 1]
        else:
            chunk, width, num_rows = threads[first:], seq_len, rows_per_micro_batch
        packed = pack([(r["token_ids"], r["trainable"]) for r in chunk], width, num_rows, one_per_row)
        # Packing each thread's flat positions (+1, so 0 stays padding) with the same
        # rule tells where every position landed, without re-deriving the rule.
        where = pack(
            [(starts[first + i] + 1 + np.arange(n), r["trainable"]) for i, (r, n) in enumerate(zip(chunk, lengths[first:]))],
            width,
            num_rows,
            one_per_row,
        )
        assert packed.num_sequences == where.num_sequences > 0
        gather = _gatherer(where)
        micro_batches.append(
            MicroBatch(
                packed=packed,
                behaviour_logprobs=gather(flat[0], 0.0, np.float32),
                advantages=gather(flat[1], 0.0, np.float32),
                loss_mask=gather(flat[2], 0.0, np.float32),
                episode_index=gather(flat_episode, 0, np.int64),
                versions=gather(flat[3], -1, np.int32),
            )
        )
        assert ((micro_batches[-1].loss_mask > 0) == (packed.labels != IGNORE)).all()
        first += packed.num_sequences
    return RLBatch(micro_batches, episode_ids, rewards, advantages, penalty)


def _trees(threads: list[dict[str, Any]], seq_len: int) -> list[tuple[list[int], Tree]]:
    """(thread indices, their prefix tree) per group, in first-seen order; a group whose
    tree is longer than `seq_len` is split into one tree per episode."""
    groups: dict[Any, dict[Any, list[int]]] = {}
    for i, r in enumerate(threads):
        groups.setdefault(r["group_id"], {}).setdefault(r["episode_id"], []).append(i)
    out = []
    for episodes in groups.values():
        members = [i for ids in episodes.values() for i in ids]
        tree = build_tree([(threads[i]["token_ids"], threads[i]["trainable"]) for i in members])
        if len(tree) <= seq_len or len(episodes) == 1:
            out.append((members, tree))
            continue
        for ids in episodes.values():
            out.append((ids, build_tree([(threads[i]["token_ids"], threads[i]["trainable"]) for i in ids])))
    return out


def _shared_micro_batches(
    threads: list[dict[str, Any]],
    flat: list[np.ndarray],
    flat_episode: np.ndarray,
    starts: np.ndarray,
    seq_len: int,
    num_rows: int,
) -> list[MicroBatch]:
    """Layout `shared`: each group's threads as one prefix tree (learner/prefix_tree.py),
    trees packed first-fit into rows. A prediction made at a shared slot carries the
    values of the one thread that trains the predicted token."""
    trees = _trees(threads, seq_len)
    seq_len = max([seq_len, *(len(tree) for _, tree in trees)])  # an episode longer than a row widens it
    # Per tree, the flat index (into the threads' shifted per-position arrays) of each slot's prediction.
    sources = []
    for members, tree in trees:
        seq, token = label_sources(tree)
        member_starts = starts[np.asarray(members, dtype=np.int64)]
        sources.append(np.where(seq >= 0, member_starts[np.maximum(seq, 0)] + token - 1, -1))
    micro_batches = []
    first = 0
    while first < len(trees):
        rows = pack_trees([tree for _, tree in trees[first:]], seq_len, num_rows)
        assert rows.num_trees > 0
        source = np.full(rows.tree_of.shape, -1, np.int64)
        for t in range(rows.num_trees):
            here = rows.tree_of == t
            source[here] = sources[first + t][rows.slot_of[here]]
        has = source >= 0
        take = np.maximum(source, 0)

        def gather(values: np.ndarray, fill: float, dtype: Any) -> np.ndarray:
            return np.where(has, values[take], fill).astype(dtype)

        loss_mask = gather(flat[2], 0.0, np.float32)
        next_token = np.zeros_like(rows.token_ids)
        next_token[:, :-1] = rows.token_ids[:, 1:]
        packed = PackedBatch(
            input_ids=rows.token_ids,
            position_ids=rows.positions,
            segment_ids=rows.tree_ids,
            labels=np.where(loss_mask > 0, next_token, IGNORE),
            num_sequences=rows.num_trees,  # the units packed: trees
            attend_end=rows.attend_end,
        )
        micro_batches.append(
            MicroBatch(
                packed=packed,
                behaviour_logprobs=gather(flat[0], 0.0, np.float32),
                advantages=gather(flat[1], 0.0, np.float32),
                loss_mask=loss_mask,
                episode_index=gather(flat_episode, 0, np.int64),
                versions=gather(flat[3], -1, np.int32),
            )
        )
        first += rows.num_trees
    return micro_batches
