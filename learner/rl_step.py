"""The RL learner as a plain class: decoupled-PPO updates on one batch of episodes.

`RLLearner.step(rows)` packs the episode rows (learner/rl_batch.py) into micro-batches
(one forward each), splits them into `rl.mini_batches` groups and makes one optimizer
update per group, `rl.ppo_epochs` times over; then it bumps `version` once. An update
runs each of its micro-batches forward and backward (the decoupled PPO loss of
learner/ppo_loss.py, every token weighted by its share of the update's normalized
loss, so the micro-batches' gradients add up to the update's), then clips the gradient
and steps the optimizer(s). The Ray actor wraps this class.

Device and precision (`rl.device`, `rl.dtype`): the model, the reference and each
micro-batch's tensors sit on the CPU or the process's GPU. In float32 everything is
fp32 (the CPU path). In bfloat16 (GPU only) the decoder's forward and backward run
under bf16 autocast over fp32 master weights, so gradients and optimizer states are
fp32; the log-softmax, entropy and loss take the bf16 logits (or hidden states) up to
fp32 outside autocast.

Proximal policy: AReaL's pi_prox is the learner's weights before the step's first update.
With a single update per step the forward runs with exactly those weights, so the
proximal logprobs are that forward's logprobs detached (one forward less); with several,
a no-grad forward before the first update computes them, and the PPO ratio
pi_theta / pi_prox is clipped in the later updates. The importance weight
min(pi_prox / pi_behav, cap) corrects for tokens sampled by older versions.

Data parallelism: several ranks share each update's micro-batches, balanced by tokens,
with per-token loss weights that hold the global normalization and summed gradients
(learner/data_parallel.py), with whole replicas or FSDP2 shards. Not covered:
learning-rate schedules.
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from learner.fused_logprob import logprob_and_entropy
from learner.optim import build_optimizers
from learner.packing import IGNORE, attention_mask
from learner.data_parallel import (
    all_reduce_gradients,
    all_reduce_sum,
    assign_micro_batches,
    full_tensor,
    passes_per_rank,
    shard_model,
)
from learner.distributed import learner_device
from learner.ppo_loss import decoupled_ppo_loss, normalization_weights
from learner.rl_batch import MicroBatch, RLBatch, build_batch
from learner.rl_config import RLConfig


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
    inputs = {
        "input_ids": torch.from_numpy(packed.input_ids[:, :width]).to(device),
        "position_ids": torch.from_numpy(packed.position_ids[:, :width]).to(device),
        # One thread per row, from column 0: causal attention (the model's default) is exact.
        "attention_mask": None if packed.one_per_row else attention_mask(packed.segment_ids[:, :width]).to(device),
    }
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
        flat_logprobs, flat_entropy = logprob_and_entropy(
            hidden.reshape(-1, hidden.shape[-1]), model.lm_head.weight, labels.reshape(-1),
            backend="torch" if head == "chunked" else "triton",
        )  # fmt: skip
        logprobs, entropy = flat_logprobs.view(rows, width), flat_entropy.view(rows, width)
    entropy = torch.where(torch.from_numpy(packed.segment_ids[:, :width] > 0).to(device), entropy, 0.0)
    pad = (0, seq_len - width)
    return torch.nn.functional.pad(logprobs, pad), torch.nn.functional.pad(entropy, pad)


# What each update adds up (over ranks): loss terms weighted by token weights, mismatch
# sums over trained tokens (first epoch only), the grad norm (rank 0 only).
SUMS = (
    "loss", "policy_loss", "kl_ref", "clip_fraction", "importance_weight", "truncated_fraction", "entropy",
    "mismatch_k3", "mismatch_k1", "tokens", "grad_norm",
)  # fmt: skip


class RLLearner:
    """Holds the policy, its optimizer(s), an optional frozen reference, and the version.

    With `world_size` > 1 this is one data-parallel rank (learner/data_parallel.py): the
    caller has initialized the torch.distributed process group, every rank is given the
    same rows, trains its token-balanced share of the micro-batches, and the gradients
    are summed before each optimizer step, so every rank makes the update one learner
    would make on the whole batch.
    """

    def __init__(self, model: torch.nn.Module, config: RLConfig, rank: int = 0, world_size: int = 1):
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.sharded = config.data_parallel == "fsdp2" and world_size > 1
        self.device = learner_device(config)
        self.autocast_dtype = torch.bfloat16 if config.compute_dtype == "bfloat16" else None
        self.version = 0
        self.reference: torch.nn.Module | None = None
        if config.kl_coef > 0:  # a whole frozen copy on every rank (forward only)
            self.reference = copy.deepcopy(model).float().to(self.device).eval().requires_grad_(False)
        self.model = model.float().to(self.device).train()  # fp32 master weights, also under bf16 autocast
        if self.sharded:
            self.model = shard_model(self.model, world_size, self.device.type)
        self.optimizers = build_optimizers(
            self.model, config.optimizer, config.lr, config.weight_decay, (config.beta1, config.beta2), config.lr
        )

    def step(self, rows: Iterable[dict[str, Any]] | pa.Table) -> dict[str, Any]:
        """`ppo_epochs` passes of `mini_batches` updates over one batch of whole episodes
        (episode table v2 rows: groups by group_id, the parallel bonus's token counts from
        the rows); bumps the version once. Returns metrics (see `_metrics`)."""
        c = self.config
        batch = build_batch(
            rows,
            estimator=c.estimator,
            seq_len=c.seq_len,
            rows_per_micro_batch=c.rows,
            parallel_bonus=c.parallel_bonus,
            layout=c.layout,
        )
        if batch.num_trained_tokens == 0:
            raise ValueError(f"no trainable tokens in {len(batch.episode_ids)} episodes")
        micro = batch.micro_batches
        shards = assign_micro_batches([mb.packed.num_tokens for mb in micro], self.world_size)
        mine = set(shards[self.rank])
        num_mini = min(c.mini_batches, len(micro))
        proximal: dict[int, torch.Tensor] | None = None
        if c.ppo_epochs > 1 or num_mini > 1:  # pi_prox: the weights before the first update, one no-grad forward
            with torch.no_grad():
                proximal = {i: self._logprobs(self.model, micro[i])[0] for i in sorted(mine)}
                if self.sharded:  # every rank makes as many (gathering) forwards as the busiest one
                    for _ in range(max(map(len, shards)) - len(mine)):
                        self._logprobs(self.model, micro[0])
        reference = None
        if self.reference is not None:  # a whole copy on each rank: no collectives
            with torch.no_grad():
                reference = {i: self._logprobs(self.reference, micro[i])[0] for i in sorted(mine)}
        sums = []
        for epoch in range(c.ppo_epochs):
            for chunk in np.array_split(np.arange(len(micro)), num_mini):
                weights = normalization_weights(
                    [micro[i].loss_mask for i in chunk], [micro[i].episode_index for i in chunk], c.normalization
                )
                local = [(int(i), w) for i, w in zip(chunk, weights) if int(i) in mine]
                passes = passes_per_rank(shards, chunk) if self.sharded else len(local)
                padding = [(int(chunk[0]), np.zeros_like(weights[0]))] * (passes - len(local))
                sums.append(self._update(micro, local + padding, proximal, reference, first_epoch=epoch == 0))
        self.version += 1
        totals = torch.stack(sums)
        if self.world_size > 1:
            all_reduce_sum(totals)
        return self._metrics(batch, totals)

    def _update(
        self,
        micro: list[MicroBatch],
        local: list[tuple[int, np.ndarray]],
        proximal: dict[int, torch.Tensor] | None,
        reference: dict[int, torch.Tensor] | None,
        first_epoch: bool,
    ) -> torch.Tensor:
        """One optimizer update from this rank's (micro-batch, loss weights) passes, each a
        forward and a backward (zero weights: an FSDP padding pass that only keeps the
        collectives in step). With `proximal` None it is the step's only update, so pi_prox
        is the forward's logprobs detached. Returns this rank's part of the update's sums
        (SUMS); the grad norm is the same on every rank, so it counts only on rank 0."""
        part = torch.zeros(len(SUMS), dtype=torch.float64)
        for index, weights in local:
            part += self._pass(micro[index], index, torch.from_numpy(weights).flatten(), proximal, reference, first_epoch)
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        if self.world_size > 1 and not self.sharded:  # FSDP2 reduce-scattered them in each backward
            all_reduce_gradients(parameters)
        grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(parameters, self.config.grad_clip or float("inf")))
        part[SUMS.index("grad_norm")] = float(grad_norm) if self.rank == 0 else 0.0
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return part

    def _pass(self, mb: MicroBatch, index: int, weights: torch.Tensor, proximal, reference, first_epoch: bool) -> torch.Tensor:
        """Forward and backward of one micro-batch; its weighted sums (zeros for padding)."""
        c = self.config
        device = next(self.model.parameters()).device
        weights = weights.to(device)

        def field(name: str) -> torch.Tensor:
            return torch.from_numpy(getattr(mb, name)).flatten().to(device)

        logprobs, entropy = self._logprobs(self.model, mb)
        # A padding pass (zero weights) may borrow another rank's micro-batch: no proximal of its own.
        prox = logprobs.detach() if proximal is None else proximal.get(index, logprobs.detach())
        behaviour, mask = field("behaviour_logprobs"), field("loss_mask")
        terms = decoupled_ppo_loss(
            logprobs, prox, behaviour, field("advantages"), mask,
            clip_low=c.clip_low, clip_high=c.clip_high, weight_cap=c.weight_cap,
            reference_logprobs=None if reference is None else reference.get(index),
            kl_coef=c.kl_coef, token_weights=weights,
        )  # fmt: skip
        terms.loss.backward()
        part = torch.zeros(len(SUMS), dtype=torch.float64)
        if not bool((weights > 0).any()):
            return part
        part[:7] = torch.tensor([
            terms.loss.item(), terms.policy_loss.item(), terms.kl.item(), terms.clip_fraction,
            terms.mean_importance_weight, terms.truncated_fraction, float((entropy.detach() * weights).sum()),
        ], dtype=torch.float64)  # fmt: skip
        if first_epoch:  # each trained token once: the engine-learner mismatch of pi_prox
            on = mask > 0
            delta = (prox - behaviour)[on]
            part[7:10] = torch.tensor([float((torch.exp(delta) - delta - 1).sum()), float((-delta).sum()), int(on.sum())])
        return part

    def _logprobs(self, model: torch.nn.Module, micro_batch: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logprobs, entropy = label_logprobs(model, micro_batch, self.config.logprob_head, self.autocast_dtype)
        return logprobs.flatten(), entropy.flatten()

    def _metrics(self, batch: RLBatch, totals: torch.Tensor) -> dict[str, Any]:
        """`totals` [updates, len(SUMS)]: every rank's sums, added. Loss terms, entropy and
        grad norm are means over the step's updates (entropy: the policy's mean entropy on
        trained tokens; a collapse or blow-up shows here first). mismatch_kl is the k3
        estimate of KL(behaviour || proximal) on trained tokens, exp(d) - d - 1 with
        d = prox - behav (>= 0; 0 when the engine and learner agree); mismatch_k1 is
        mean(behav - prox), the unbiased but noisy k1 estimate. token_staleness counts
        trained tokens by how many versions older than the weights that took the first
        gradient they are."""
        means = totals.mean(0)
        summed = totals.sum(0)
        versions = np.concatenate([mb.versions[mb.loss_mask > 0] for mb in batch.micro_batches])
        lags, counts = np.unique((self.version - 1) - versions.astype(np.int64), return_counts=True)
        num_tokens = max(summed[SUMS.index("tokens")].item(), 1.0)
        return {
            "version": self.version,
            **{name: means[SUMS.index(name)].item() for name in SUMS[:7]},
            "mismatch_kl": summed[SUMS.index("mismatch_k3")].item() / num_tokens,
            "mismatch_k1": summed[SUMS.index("mismatch_k1")].item() / num_tokens,
            "grad_norm": means[SUMS.index("grad_norm")].item(),
            "max_token_staleness": int(lags.max()),
            "token_staleness": {int(lag): int(n) for lag, n in zip(lags, counts)},
            "updates": int(totals.shape[0]),
            "mean_advantage": float(batch.advantages.mean()),
            "mean_reward": float(batch.rewards.mean()),
            "episodes": len(batch.episode_ids),
            "tokens": sum(mb.packed.num_tokens for mb in batch.micro_batches),
            "trained_tokens": batch.num_trained_tokens,
            "micro_batches": len(batch.micro_batches),
        }

    def weights(self) -> dict[str, np.ndarray] | None:
        """fp32 numpy copies by Hugging Face parameter name, on rank 0 (None elsewhere; under
        FSDP2 every rank must call it, it gathers the shards); a tied head appears once, as
        model.embed_tokens.weight (engines accept any subset of their names)."""
        if self.rank != 0 and not self.sharded:
            return None
        arrays = {
            name: full_tensor(p.detach()).to("cpu", torch.float32).numpy().copy()
            for name, p in self.model.named_parameters()
        }
        return arrays if self.rank == 0 else None

    def state_dict(self) -> dict[str, Any]:
        """Whole (unsharded) states with every tensor on the CPU (a learner on either device
        loads them); under FSDP2 every rank must call it (it gathers)."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            model_state, optimizer_state = get_state_dict(self.model, self.optimizers, options=options)
            state = {"model": model_state, "optimizers": optimizer_state, "version": self.version, "fsdp2": True}
        else:
            state = {
                "model": _on_cpu(self.model.state_dict()),
                "optimizers": [_on_cpu(o.state_dict()) for o in self.optimizers],
                "version": self.version,
            }
        if self.reference is not None:
            state["reference"] = _on_cpu(self.reference.state_dict())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("fsdp2", False) != self.sharded:
            raise ValueError("a learner state saved with data_parallel fsdp2 loads only into fsdp2 learners, and back")
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            set_state_dict(self.model, self.optimizers, model_state_dict=state["model"],
                           optim_state_dict=state["optimizers"], options=StateDictOptions(full_state_dict=True))  # fmt: skip
        else:
            self.model.load_state_dict(state["model"])
            for optimizer, optimizer_state in zip(self.optimizers, state["optimizers"], strict=True):
                optimizer.load_state_dict(optimizer_state)
        if self.reference is not None:
            self.reference.load_state_dict(state["reference"])
        self.version = int(state["version"])


def _on_cpu(state: Any) -> Any:
    """`state` (nested dicts and lists of tensors and plain values) with every tensor on the
    CPU; CPU tensors are returned as they are, not copied."""
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        moved = type(state)((key, _on_cpu(value)) for key, value in state.items())
        if hasattr(state, "_metadata"):  # a module state dict's per-module versions
            moved._metadata = state._metadata
        return moved
    if isinstance(state, list):
        return [_on_cpu(value) for value in state]
    return state
