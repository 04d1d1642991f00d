"""The supervised stage: next-token training on packed trace sequences.

`SequenceStream` walks the sequences in a seeded order, epoch after epoch, and its
cursor (epoch, position) is saved in every checkpoint so a resumed run continues with
exactly the batches it would have seen. `train_sft` runs the loop: packed batches
(learner/packing.py; on CUDA they attend through a FlexAttention block mask, on CPU
through a dense mask: learner/packed_attention.py), token-mean cross-entropy over
trainable tokens, AdamW or Muon, warmup + cosine, gradient clipping, a progress bar with
loss and tokens/s, JSON-lines metrics, and resumable checkpoints (learner/checkpoint.py).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from learner.checkpoint import prune_checkpoints, rng_state, save_checkpoint, set_rng_state
from learner.models import enable_activation_checkpointing
from learner.optim import build_optimizers
from learner.packed_attention import forward_inputs
from learner.packing import IGNORE, PackedBatch, pack
from learner.prefix_tree import build_tree, packed_trees
from learner.schedule import warmup_cosine
from learner.sft_config import SFTConfig

Sequences = Sequence[tuple[Sequence[int], Sequence[bool]]]


@dataclass
class SequenceStream:
    """Endless seeded epochs over `sequences`, packed a batch at a time.

    The units are (token ids, trainable flags) sequences packed side by side
    (learner/packing.py `pack`), or, with `pack=packed_trees`, prefix trees
    (learner/prefix_tree.py: one per trace episode, its threads sharing their prefixes)."""

    sequences: Sequence[Any]
    seed: int
    epoch: int = 0
    position: int = 0
    pack: Callable[[list[Any], int, int], PackedBatch] = pack
    _order: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        assert len(self.sequences) > 0, "no sequences to train on"
        self._order = self._epoch_order(self.epoch)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.sequences))

    def next_batch(self, seq_len: int, rows: int) -> PackedBatch:
        if self.position >= len(self._order):
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._epoch_order(self.epoch)
        window = self._order[self.position : self.position + rows * seq_len]
        batch = self.pack([self.sequences[i] for i in window], seq_len, rows)
        assert batch.num_sequences > 0  # the units packed (sequences or trees)
        self.position += batch.num_sequences
        return batch

    @property
    def cursor(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}


def training_units(families: Sequence[Sequences], layout: str, seq_len: int) -> list[Any]:
    """The stream's units for `families` (the sequences of one trace episode, or one example
    each) under SFTConfig.layout: one prefix tree per family (shared) or the sequences
    (packed); units longer than `seq_len` are left out. `unit_packer(layout)` packs them."""
    if layout == "shared":
        trees = [build_tree(family) for family in families]
        return [tree for tree in trees if len(tree) <= seq_len]
    return [s for family in families for s in family if len(s[0]) <= seq_len]


def unit_packer(layout: str) -> Callable[[list[Any], int, int], PackedBatch]:
    """How SFTConfig.layout packs its units: prefix trees (shared) or sequences (packed)."""
    return packed_trees if layout == "shared" else pack


def packed_loss(model: torch.nn.Module, batch: PackedBatch, device: torch.device | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy over the batch's trained tokens; packed rows attend
    in the layout of the device (learner/packed_attention.py)."""
    device = device or torch.device("cpu")
    inputs = forward_inputs(model, batch, device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(**inputs).logits
    labels = torch.from_numpy(batch.labels).to(device)
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)


def train_sft(
    model: torch.nn.Module,
    tokenizer: Any,
    units: Sequence[Any],
    config: SFTConfig,
    run_dir: Path,
    trained_keys: list,
    resume_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `model` in place on `units` (from `training_units`: sequences, or prefix trees
    under SFTConfig.layout=shared); returns the final metrics. Checkpoints go to run_dir/checkpoints."""
    from tqdm import tqdm

    torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model.to(device).train()
    if config.gradient_checkpointing:
        enable_activation_checkpointing(model)
    optimizers = build_optimizers(
        model, config.optimizer, config.lr, config.weight_decay, (config.beta1, config.beta2), config.lr
    )
    pack_units = unit_packer(config.layout)
    stream = SequenceStream(units, config.seed, pack=pack_units)
    step = 0
    if resume_state is not None:
        for optimizer, state in zip(optimizers, resume_state["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        stream = SequenceStream(units, config.seed, **resume_state["cursor"], pack=pack_units)
        step = resume_state["step"]
        set_rng_state(resume_state["rng"])
    metrics_path = run_dir / "sft_metrics.jsonl"
    checkpoints = run_dir / "checkpoints"
    window_tokens, window_start = 0, time.perf_counter()
    last: dict[str, Any] = {}
    bar = tqdm(total=config.steps, initial=step, unit="step", file=sys.stderr, dynamic_ncols=True)
    while step < config.steps:
        batch = stream.next_batch(config.seq_len, config.rows)
        lr_scale = warmup_cosine(step, 1.0, config.warmup_steps, config.steps, config.min_lr_ratio)
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lr_scale
        loss = packed_loss(model, batch, device)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or float("inf"))
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        step += 1
        window_tokens += batch.num_tokens
        if step % config.log_every == 0 or step == config.steps:
            elapsed = time.perf_counter() - window_start
            last = {
                "step": step,
                "loss": round(loss.item(), 5),
                "lr": config.lr * lr_scale,
                "grad_norm": round(float(grad_norm), 4),
                "tokens_per_s": round(window_tokens / max(elapsed, 1e-9), 1),
                "epoch": stream.epoch,
            }
            with metrics_path.open("a") as f:
                f.write(json.dumps(last) + "\n")
            bar.set_postfix(loss=f"{last['loss']:.4f}", tok_s=f"{last['tokens_per_s']:.0f}")
            window_tokens, window_start = 0, time.perf_counter()
        bar.update(1)
        if step % config.checkpoint_every == 0 and step < config.steps:
            state = {
                "step": step,
                "optimizers": [o.state_dict() for o in optimizers],
                "cursor": stream.cursor,
                "rng": rng_state(),
            }
            save_checkpoint(checkpoints / f"step-{step}", model, tokenizer, state, trained_keys)
            prune_checkpoints(checkpoints, config.keep_checkpoints)
    bar.close()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    model.to("cpu").eval()
    return last
