"""The RL learner as a plain class: one decoupled-PPO update per batch of episodes.

`RLLearner.step(rows)` packs the episode rows (learner/rl_batch.py), runs the model in
fp32 over every micro-batch to get the logprob of each label, computes the decoupled PPO
loss (learner/ppo_loss.py) over all trained tokens of the step at once, clips the
gradient, steps the optimizer(s) and bumps `version`. The Ray actor wraps this class.

Proximal policy: AReaL's pi_prox is the learner's weights before this update. A step
makes exactly one optimizer update from one forward pass, so pi_prox equals the weights
the forward runs with, and the proximal logprobs are that forward's logprobs detached:
the same numbers a separate no-grad forward would give, for one forward less. (Several
updates per batch would need a no-grad forward before the first.) The importance weight
min(pi_prox / pi_behav, cap) then corrects for tokens sampled by older versions.

Not covered: learning-rate schedules, data parallelism, fused chunked logprobs (issue 7).
The micro-batches' graphs are all held until the single backward, so `rows` bounds the
attention-mask size of a forward, not the activation memory of a step.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from learner.optim import build_optimizers
from learner.packing import IGNORE, attention_mask
from learner.ppo_loss import decoupled_ppo_loss
from learner.rl_batch import MicroBatch, build_batch
from learner.rl_config import RLConfig


def label_logprobs(model: torch.nn.Module, batch: MicroBatch) -> torch.Tensor:
    """log p(label | prefix) at every position, [rows, seq_len] fp32; 0 where there is no label."""
    device = next(model.parameters()).device
    packed = batch.packed
    logits = model(
        input_ids=torch.from_numpy(packed.input_ids).to(device),
        position_ids=torch.from_numpy(packed.position_ids).to(device),
        attention_mask=attention_mask(packed.segment_ids).to(device),
    ).logits.float()
    labels = torch.from_numpy(packed.labels).to(device)
    has_label = labels != IGNORE
    gathered = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(has_label, gathered, torch.zeros_like(gathered))


class RLLearner:
    """Holds the policy, its optimizer(s), an optional frozen reference, and the version."""

    def __init__(self, model: torch.nn.Module, config: RLConfig):
        self.model = model.float().train()
        self.config = config
        self.version = 0
        self.optimizers = build_optimizers(
            model, config.optimizer, config.lr, config.weight_decay, (config.beta1, config.beta2), config.lr
        )
        self.reference: torch.nn.Module | None = None
        if config.kl_coef > 0:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)

    def step(
        self,
        rows: Iterable[dict[str, Any]] | pa.Table,
        episode_tokens: Mapping[str, tuple[int, int]] | None = None,
    ) -> dict[str, float]:
        """One update on a batch of whole episodes; returns metrics (see `_metrics`)."""
        c = self.config
        batch = build_batch(
            rows,
            estimator=c.estimator,
            seq_len=c.seq_len,
            rows_per_micro_batch=c.rows,
            parallel_bonus=c.parallel_bonus,
            episode_tokens=episode_tokens,
        )
        if batch.num_trained_tokens == 0:
            raise ValueError(f"no trainable tokens in {len(batch.episode_ids)} episodes")
        device = next(self.model.parameters()).device

        def flat(name: str) -> torch.Tensor:
            return torch.cat([torch.from_numpy(getattr(mb, name)).flatten() for mb in batch.micro_batches]).to(device)

        mask = flat("loss_mask")
        logprobs = torch.cat([label_logprobs(self.model, mb).flatten() for mb in batch.micro_batches])
        reference = None
        if self.reference is not None:
            with torch.no_grad():
                reference = torch.cat([label_logprobs(self.reference, mb).flatten() for mb in batch.micro_batches])
        proximal = logprobs.detach()
        behaviour = flat("behaviour_logprobs")
        terms = decoupled_ppo_loss(
            logprobs,
            proximal,
            behaviour,
            flat("advantages"),
            mask,
            clip_low=c.clip_low,
            clip_high=c.clip_high,
            weight_cap=c.weight_cap,
            reference_logprobs=reference,
            kl_coef=c.kl_coef,
            episode_ids=flat("episode_index") if c.normalization == "episode_mean" else None,
        )
        terms.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip or float("inf"))
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.version += 1
        return self._metrics(batch, terms, proximal, behaviour, mask, flat("versions"), float(grad_norm))

    def _metrics(self, batch, terms, proximal, behaviour, mask, versions, grad_norm) -> dict[str, float]:
        """mismatch_kl is the k3 estimate of KL(behaviour || proximal) on trained tokens,
        exp(d) - d - 1 with d = prox - behav (>= 0; 0 when the engine and learner agree);
        mismatch_k1 is mean(behav - prox), the unbiased but noisy k1 estimate."""
        on = mask > 0
        delta = (proximal - behaviour)[on]
        stale = (self.version - 1) - versions[on]  # versions behind the weights that took the gradient
        return {
            "version": self.version,
            "loss": terms.loss.item(),
            "policy_loss": terms.policy_loss.item(),
            "kl_ref": terms.kl.item(),
            "clip_fraction": terms.clip_fraction,
            "importance_weight": terms.mean_importance_weight,
            "truncated_fraction": terms.truncated_fraction,
            "mismatch_kl": (torch.exp(delta) - delta - 1.0).mean().item(),
            "mismatch_k1": (-delta).mean().item(),
            "max_token_staleness": int(stale.max().item()),
            "grad_norm": grad_norm,
            "mean_advantage": float(batch.advantages.mean()),
            "mean_reward": float(batch.rewards.mean()),
            "episodes": len(batch.episode_ids),
            "tokens": sum(mb.packed.num_tokens for mb in batch.micro_batches),
            "trained_tokens": batch.num_trained_tokens,
            "micro_batches": len(batch.micro_batches),
        }

    def weights(self) -> dict[str, np.ndarray]:
        """fp32 numpy copies by Hugging Face parameter name; a tied head appears once, as
        model.embed_tokens.weight (engines accept any subset of their names)."""
        return {name: p.detach().to("cpu", torch.float32).numpy().copy() for name, p in self.model.named_parameters()}

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "version": self.version,
        }
        if self.reference is not None:
            state["reference"] = self.reference.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for optimizer, optimizer_state in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(optimizer_state)
        if self.reference is not None:
            self.reference.load_state_dict(state["reference"])
        self.version = int(state["version"])
