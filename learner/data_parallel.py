"""Data parallelism for the RL learner: token-balanced micro-batch shards and gradient sums.

Every learner rank builds the same whole batch (group advantages need all its episodes)
and trains only its shard of the micro-batches. Each token's loss carries a weight that
already holds the global normalization (learner/ppo_loss.py `normalization_weights`), so
a rank's loss is its part of the global loss, the sum of the ranks' gradients is the
gradient of one learner on the whole batch, and after the all-reduce every rank clips
and steps identically: the replicas stay equal without broadcasting weights.
torch.distributed with gloo on CPU, NCCL on GPU; the process group is set up by the
caller (the Ray learner actor). Not covered: FSDP (sharded parameters) and overlapping
the all-reduce with the backward.
"""
from __future__ import annotations

import heapq
from collections.abc import Sequence

import torch
import torch.distributed as dist


def assign_micro_batches(num_tokens: Sequence[int], world_size: int) -> list[list[int]]:
    """Indices of the micro-batches each rank trains, balanced by tokens (largest first to
    the least-loaded rank; ties to the lowest rank). Every index lands on exactly one rank."""
    loads = [(0, rank) for rank in range(world_size)]
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(num_tokens)), key=lambda i: (-num_tokens[i], i)):
        load, rank = heapq.heappop(loads)
        shards[rank].append(index)
        heapq.heappush(loads, (load + num_tokens[index], rank))
    return [sorted(shard) for shard in shards]


def all_reduce_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks (a parameter without one counts as 0)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p in parameters:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(values)
    return values
