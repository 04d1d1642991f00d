"""Data parallelism for the RL learner: token-balanced micro-batch shards and gradient sums.

Every learner rank builds the same whole batch (group advantages need all its episodes)
and trains only its shard of the micro-batches. Each token's loss carries a weight that
already holds the global normalization (learner/ppo_loss.py `normalization_weights`), so
a rank's loss is its part of the global loss, the sum of the ranks' gradients is the
gradient of one learner on the whole batch, and after the all-reduce every rank clips
and steps identically: the replicas stay equal without broadcasting weights.
torch.distributed with gloo on CPU, NCCL on GPU (`rl.device`, learner/distributed.py);
the process group is set up by the caller (the Ray learner actor). Gradients and
parameters are reduced where they live; the step's CPU metric sums go through the GPU
when the backend is NCCL, which reduces only GPU tensors.

Two ways to keep the ranks in step (`rl.data_parallel`): "replicate" keeps a whole copy
of the model, optimizer and gradients on every rank and all-reduces the gradients once
per update; "fsdp2" shards parameters, gradients and optimizer states over the ranks
with torch's FSDP2 (`fully_shard` per decoder layer and at the root), which gathers each
layer's parameters for its forward and backward and reduce-scatters its gradients; it
is the path for models that do not fit one GPU, and it runs on CPU with gloo for tests.
With FSDP every rank must run the same number of forwards and backwards per update, so a
rank with fewer micro-batches runs zero-weight passes (`passes_per_rank`).
Not covered: overlapping the replicate all-reduce with the backward, tensor/sequence
parallelism, Muon under FSDP2.
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
    """Sum `values` over the ranks in place (a CPU tensor takes a round trip through this
    rank's GPU under NCCL)."""
    if dist.get_backend() == "nccl" and values.device.type != "cuda":
        on_gpu = values.to("cuda")
        dist.all_reduce(on_gpu)
        values.copy_(on_gpu)
        return values
    dist.all_reduce(values)
    return values


def passes_per_rank(shards: Sequence[Sequence[int]], chunk: Sequence[int]) -> int:
    """Forward/backward passes every rank makes in an update over the micro-batches `chunk`
    under FSDP: the most any rank has (the others pad with zero-weight passes)."""
    members = set(int(i) for i in chunk)
    return max(len(members.intersection(shard)) for shard in shards)


def shard_model(model: torch.nn.Module, world_size: int, device: str | None = None) -> torch.nn.Module:
    """FSDP2: shard each decoder layer and the rest of the model over the ranks, with
    gradients summed (not averaged) across ranks since the loss weights are global shares.
    The mesh is on `device` ("cpu" or "cuda"; default: where the model's parameters are),
    so a CPU learner on a GPU machine keeps its shards on the CPU."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = device or next(model.parameters()).device.type
    mesh = init_device_mesh(device, (world_size,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for module in model.modules():
        if hasattr(module, "set_gradient_divide_factor"):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # plain SUM (gloo has no PREMUL_SUM)
    return model


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded (DTensor) value gathered whole on every rank (a collective); others as they are."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
