"""Where a learner rank computes and how the ranks talk: its torch device and process-group backend.

Both follow `rl.device`, never `torch.cuda.is_available()` alone: a learner configured
for the CPU on a machine that has a GPU keeps its model on the CPU, and its ranks must
then reduce CPU tensors, which gloo does and NCCL cannot. The Ray learner actor
(actors/actors.py) asks these before it builds the RLLearner, so a missing GPU is one
clear error at start-up rather than a failure inside the first step.
Not covered: choosing among several visible GPUs (Ray gives each learner actor one, which
is then device 0 of that process), CPU offload of parameters or optimizer states.
"""
from __future__ import annotations

import torch

from learner.rl_config import RLConfig

DEVICES = ("cpu", "cuda")  # RLConfig.device's choices


class LearnerDeviceError(RuntimeError):
    """`rl.device` asks for hardware this process does not have."""


def process_group_backend(device: str) -> str:
    """The torch.distributed backend for ranks whose tensors live on `device`: "nccl" for
    cuda (GPU tensors over NVLink / InfiniBand), "gloo" for cpu."""
    assert device in DEVICES, f"unknown learner device {device!r}"
    return "nccl" if device == "cuda" else "gloo"


def learner_device(config: RLConfig) -> torch.device:
    """The torch device of `config.device` (an RLConfig): the CPU, or this process's current
    GPU; a LearnerDeviceError naming rl.device when cuda is asked for and torch sees none."""
    if config.device != "cuda":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise LearnerDeviceError(
            "rl.device: cuda was asked for, but torch sees no CUDA device (torch.cuda.is_available() "
            "is False: a CPU build of torch, or no GPU given to this process; a Ray learner actor "
            "needs num_gpus=1); set rl.device=cpu to train on the CPU"
        )
    return torch.device("cuda", torch.cuda.current_device())
