"""The learner's forward: token logprobs and entropies of a packed micro-batch.

One function, `label_logprobs`, used by the RL step (learner/rl_step.py), the
trainer-engine parity tests and the LoRA tests: the model's full logits, or the chunked
torch / Triton head over the last hidden states (learner/fused_logprob.py), with the
math in fp32 whatever the forward's autocast dtype. Packed rows attend in the layout of
the model's device (learner/packed_attention.py: a FlexAttention block mask on CUDA, a
dense mask on CPU; rows of one sequence each need no mask).
"""
from __future__ import annotations

import contextlib

import torch

from learner.fused_logprob import logprob_and_entropy
from learner.packed_attention import forward_inputs
from learner.packing import IGNORE
from learner.rl_batch import MicroBatch


def label_logprobs(
    model: torch.nn.Module, batch: MicroBatch, head: str = "full", autocast_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(label | prefix), entropy of p) at every position, each [rows, seq_len] fp32;
    the logprob is 0 where there is no label, the entropy 0 on padding.

    `head` "full" takes the model's logits; "chunked" / "triton" run the decoder without
    its head and compute both from the last hidden states and the head's weight in chunks
    (learner/fused_logprob.py), never holding [tokens, vocab] logits. The forward runs
    only over the columns some row uses: packed rows are filled from the left, so
    trailing all-padding columns (a short last micro-batch) cost nothing.

    `autocast_dtype` (bf16 on a GPU) runs the model's forward under autocast to it; the
    log-softmax and entropy are computed in fp32 after it either way.
    """
    device = next(model.parameters()).device
    packed = batch.packed
    rows, seq_len = packed.input_ids.shape
    width = int((packed.segment_ids > 0).any(axis=0).nonzero()[0].max(initial=-1)) + 1
    inputs = forward_inputs(model, packed, device, width)
    labels = torch.from_numpy(packed.labels[:, :width]).to(device)
    forward = contextlib.nullcontext() if autocast_dtype is None else torch.autocast(device.type, autocast_dtype)
    if head == "full":
        with forward:
            logits = model(**inputs).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
        gathered = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        logprobs = torch.where(labels != IGNORE, gathered, torch.zeros_like(gathered))
    else:
        with forward:
            hidden = model.model(**inputs).last_hidden_state
        weight = model.lm_head.weight
        if autocast_dtype is not None:  # the head's matmuls in bf16 on tensor cores, as autocast runs the rest;
            hidden, weight = hidden.to(autocast_dtype), weight.to(autocast_dtype)  # gradients reach fp32 weights
        flat_logprobs, flat_entropy = logprob_and_entropy(
            hidden.reshape(-1, hidden.shape[-1]), weight, labels.reshape(-1), backend="torch" if head == "chunked" else "triton",
        )  # fmt: skip
        logprobs, entropy = flat_logprobs.view(rows, width), flat_entropy.view(rows, width)
    entropy = torch.where(torch.from_numpy(packed.segment_ids[:, :width] > 0).to(device), entropy, 0.0)
    pad = (0, seq_len - width)
    return torch.nn.functional.pad(logprobs, pad), torch.nn.functional.pad(entropy, pad)
