"""The RL learner as a plain class: policy-loss updates on one batch of episodes.

`RLLearner.step(rows)` packs the episode rows (learner/rl_batch.py) into micro-batches
(one forward each), splits them into `rl.mini_batches` groups and makes one optimizer
update per group, `rl.ppo_epochs` times over; then it bumps `version` once. An update
runs each of its micro-batches forward and backward (the loss `rl.loss` with the
correction `rl.off_policy`, learner/policy_loss.py, every token weighted by its share of
the update's normalized loss, so the micro-batches' gradients add up to the update's),
then clips the gradient and steps the optimizer(s). The Ray actor wraps this class.

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

Sequence-level figures (GSPO's ratio, seq_mask's geometric mean) are means over all of
an episode's trained tokens. When every episode sits in one micro-batch they come from
that micro-batch's forward; when one spans several (learner/episode_stats.py), a
no-grad forward of the micro-batches it touches (seq_mask: the proximal forward; GSPO:
one before each update after the first) gives exact per-episode sums, added over ranks.

Data parallelism: several ranks share each update's micro-batches, balanced by tokens,
with per-token loss weights that hold the global normalization and summed gradients
(learner/data_parallel.py), with whole replicas or FSDP2 shards. Not covered:
learning-rate schedules.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from learner.label_logprobs import label_logprobs
from learner.lora_config import LoRAConfig
from learner.models import enable_activation_checkpointing
from learner.optim import build_optimizers
from learner.data_parallel import (
    all_reduce_gradients,
    all_reduce_sum,
    assign_micro_batches,
    full_tensor,
    passes_per_rank,
    shard_model,
)
from learner.distributed import learner_device
from learner.advantages import GroupConventions
from learner.episode_stats import EpisodeIndex, episode_means
from learner.policy_loss import policy_terms
from learner.ppo_loss import normalization_weights
from learner.rl_batch import MicroBatch, Overlong, RLBatch, build_batch
from learner.rl_config import RLConfig


# What each update adds up (over ranks): loss terms weighted by token weights, mismatch
# sums over trained tokens (first epoch only), the grad norm (rank 0 only).
SUMS = (
    "loss", "policy_loss", "kl_ref", "clip_fraction", "dual_clip_fraction", "importance_weight", "truncated_fraction",
    "masked_fraction", "entropy", "mismatch_k3", "mismatch_k1", "tokens", "grad_norm",
)  # fmt: skip
NUM_TERMS = SUMS.index("mismatch_k3")  # the token-weighted terms: means over the step's updates


class RLLearner:
    """Holds the policy, its optimizer(s), an optional frozen reference, and the version.

    With `world_size` > 1 this is one data-parallel rank (learner/data_parallel.py): the
    caller has initialized the torch.distributed process group, every rank is given the
    same rows, trains its token-balanced share of the micro-batches, and the gradients
    are summed before each optimizer step, so every rank makes the update one learner
    would make on the whole batch.
    """

    def __init__(
        self, model: torch.nn.Module, config: RLConfig, rank: int = 0, world_size: int = 1, lora: LoRAConfig | None = None
    ):
        """`lora` with a rank above 0 trains adapters on a frozen `model` (learner/lora.py):
        `peft` is the peft wrapper, `model` the wrapped model itself, which the steps train."""
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.sharded = config.data_parallel == "fsdp2" and world_size > 1
        self.device = learner_device(config)
        self.autocast_dtype = torch.bfloat16 if config.compute_dtype == "bfloat16" else None
        self.version = 0
        self.reference: torch.nn.Module | None = None
        if config.kl_coef > 0:  # a whole frozen copy on every rank (forward only)
            self.reference = copy.deepcopy(model).float().to(self.device).eval().requires_grad_(False)
        self.lora = lora if lora is not None and lora.enabled else None
        self.peft = None
        if self.lora is not None:
            from learner.lora import add_adapters

            self.peft = add_adapters(model, self.lora)  # in place: `model` now holds the adapters, the rest frozen
        self.model = model.float().to(self.device).train()  # fp32 master weights, also under bf16 autocast
        if config.gradient_checkpointing:
            enable_activation_checkpointing(model)
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
            parallel_bonus_cap=c.parallel_bonus_cap,
            layout=c.layout,
            conventions=GroupConventions(c.grpo_std, c.singleton_advantage),
            overlong=Overlong(c.overlong_max_tokens, c.overlong_buffer, c.overlong_penalty_factor),
        )
        if batch.num_trained_tokens == 0:
            raise ValueError(f"no trainable tokens in {len(batch.episode_ids)} episodes")
        micro = batch.micro_batches
        shards = assign_micro_batches([mb.packed.num_tokens for mb in micro], self.world_size)
        mine = set(shards[self.rank])
        num_mini = min(c.mini_batches, len(micro))
        masks, episode_index = [mb.loss_mask for mb in micro], [mb.episode_index for mb in micro]
        episodes = EpisodeIndex(masks, episode_index, len(batch.episode_ids))
        behaviour_across = c.off_policy == "seq_mask" and episodes.spans
        proximal: dict[int, torch.Tensor] | None = None
        # pi_prox: the weights before the first update, one no-grad forward (also when
        # seq_mask needs an episode's whole pi_prox before its first backward).
        if c.ppo_epochs > 1 or num_mini > 1 or behaviour_across:
            with torch.no_grad():
                proximal = {i: self._logprobs(self.model, micro[i])[0] for i in sorted(mine)}
                if self.sharded:  # every rank makes as many (gathering) forwards as the busiest one
                    for _ in range(max(map(len, shards)) - len(mine)):
                        self._logprobs(self.model, micro[0])
        reference = None
        if self.reference is not None:  # a whole copy on each rank: no collectives
            with torch.no_grad():
                reference = {i: self._logprobs(self.reference, micro[i])[0] for i in sorted(mine)}
        ratios: dict[str, torch.Tensor] = {}  # per-episode mean log-ratios [E], when episodes span micro-batches
        if behaviour_across:
            behaviour = {
                i: p - torch.from_numpy(micro[i].behaviour_logprobs).flatten().to(p.device) for i, p in proximal.items()
            }
            ratios["behaviour"] = self._episode_means(micro, episodes, behaviour)
        sums = []
        for epoch in range(c.ppo_epochs):
            for u, chunk in enumerate(np.array_split(np.arange(len(micro)), num_mini)):
                weights = normalization_weights(
                    [micro[i].loss_mask for i in chunk], [micro[i].episode_index for i in chunk], c.normalization
                )
                local = [(int(i), w) for i, w in zip(chunk, weights) if int(i) in mine]
                passes = passes_per_rank(shards, chunk) if self.sharded else len(local)
                padding = [(int(chunk[0]), np.zeros_like(weights[0]))] * (passes - len(local))
                if c.loss == "gspo" and episodes.spans and (epoch, u) != (0, 0):  # s_i = 1 exactly on the first update
                    ratios["sequence"] = self._sequence_log_ratios(micro, episodes, chunk, shards, proximal)
                # Metrics are shares of the update's tokens even where the loss weights do not sum to 1.
                metric_scale = 1.0 / max(sum(float(w.sum()) for w in weights), 1e-12)
                sums.append(self._update(micro, local + padding, proximal, reference, epoch == 0, ratios, metric_scale))
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
        ratios: Mapping[str, torch.Tensor] | None = None,
        metric_scale: float = 1.0,
    ) -> torch.Tensor:
        """One optimizer update from this rank's (micro-batch, loss weights) passes, each a
        forward and a backward (zero weights: an FSDP padding pass that only keeps the
        collectives in step). With `proximal` None it is the step's only update, so pi_prox
        is the forward's logprobs detached. `ratios`: per-episode "sequence" (GSPO) and
        "behaviour" (seq_mask) mean log-ratios over whole episodes, when they span
        micro-batches. `metric_scale` turns loss weights into shares of the update's tokens
        (1 unless they do not sum to 1). Returns this rank's part of the update's sums
        (SUMS); the grad norm is the same on every rank, so it counts only on rank 0."""
        part = torch.zeros(len(SUMS), dtype=torch.float64)
        for index, weights in local:
            part += self._pass(
                micro[index], index, torch.from_numpy(weights).flatten(), proximal, reference, first_epoch,
                ratios or {}, metric_scale,
            )  # fmt: skip
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        if self.world_size > 1 and not self.sharded:  # FSDP2 reduce-scattered them in each backward
            all_reduce_gradients(parameters)
        grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(parameters, self.config.grad_clip or float("inf")))
        part[SUMS.index("grad_norm")] = float(grad_norm) if self.rank == 0 else 0.0
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return part

    def _pass(
        self, mb: MicroBatch, index: int, weights: torch.Tensor, proximal, reference, first_epoch: bool, ratios,
        metric_scale: float,
    ) -> torch.Tensor:
        """Forward and backward of one micro-batch; its weighted sums (zeros for padding)."""
        c = self.config
        device = next(self.model.parameters()).device
        weights = weights.to(device)

        def field(name: str) -> torch.Tensor:
            return torch.from_numpy(getattr(mb, name)).flatten().to(device)

        logprobs, entropy = self._logprobs(self.model, mb)
        # A padding pass (zero weights) may borrow another rank's micro-batch: no proximal of its own.
        prox = logprobs.detach() if proximal is None else proximal.get(index, logprobs.detach())
        behaviour, mask, episode_ids = field("behaviour_logprobs"), field("loss_mask"), field("episode_index")
        per_token = {name: r.to(device, logprobs.dtype)[episode_ids] for name, r in ratios.items()}
        shares = weights * metric_scale
        terms = policy_terms(
            c, logprobs, prox, behaviour, field("advantages"), mask, episode_ids,
            token_weights=weights, metric_weights=shares,
            reference_logprobs=None if reference is None else reference.get(index),
            sequence_log_ratio=per_token.get("sequence"), behaviour_log_ratio=per_token.get("behaviour"),
        )  # fmt: skip
        terms.loss.backward()
        part = torch.zeros(len(SUMS), dtype=torch.float64)
        if not bool((weights > 0).any()):
            return part
        part[:NUM_TERMS] = torch.tensor([
            terms.loss.item(), terms.policy_loss.item(), terms.kl.item(), terms.clip_fraction, terms.dual_clip_fraction,
            terms.mean_importance_weight, terms.truncated_fraction, terms.masked_fraction,
            float((entropy.detach() * shares).sum()),
        ], dtype=torch.float64)  # fmt: skip
        if first_epoch:  # each trained token once: the engine-learner mismatch of pi_prox
            on = mask > 0
            delta = (prox - behaviour)[on]
            part[NUM_TERMS : NUM_TERMS + 3] = torch.tensor(
                [float((torch.exp(delta) - delta - 1).sum()), float((-delta).sum()), int(on.sum())]
            )
        return part

    def _episode_means(self, micro: list[MicroBatch], episodes: EpisodeIndex, values: Mapping[int, torch.Tensor]):
        """Per-episode means [E] of this rank's per-token `values`, summed over the ranks."""
        masks, episode_index = [mb.loss_mask for mb in micro], [mb.episode_index for mb in micro]
        return episode_means(values, masks, episode_index, episodes, all_reduce_sum if self.world_size > 1 else None)

    @torch.no_grad()
    def _sequence_log_ratios(self, micro, episodes: EpisodeIndex, chunk, shards, proximal) -> torch.Tensor:
        """GSPO's mean log(pi_theta / pi_prox) [E] at the current weights, for every episode
        with a token in `chunk`: a no-grad forward of this rank's micro-batches that hold any
        of their tokens (under FSDP, as many forwards on every rank)."""
        touching = set(episodes.touching(chunk))
        mine = sorted(touching.intersection(shards[self.rank]))
        values = {i: self._logprobs(self.model, micro[i])[0] - proximal[i] for i in mine}
        if self.sharded:
            for _ in range(max(len(touching.intersection(s)) for s in shards) - len(mine)):
                self._logprobs(self.model, micro[0])
        return self._episode_means(micro, episodes, values)

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
        gradient they are. Shares of trained tokens: clip_fraction (the loss's clip acted),
        dual_clip_fraction (PPO's dual clip bounded it), truncated_fraction (the behaviour
        weight was cut to the cap), masked_fraction (the off-policy correction zeroed it)."""
        means = totals.mean(0)
        summed = totals.sum(0)
        versions = np.concatenate([mb.versions[mb.loss_mask > 0] for mb in batch.micro_batches])
        lags, counts = np.unique((self.version - 1) - versions.astype(np.int64), return_counts=True)
        num_tokens = max(summed[SUMS.index("tokens")].item(), 1.0)
        return {
            "version": self.version,
            **{name: means[SUMS.index(name)].item() for name in SUMS[:NUM_TERMS]},
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
            # DAPO's overlong shaping: the share of episodes it penalized and their mean penalty.
            "overlong_fraction": 0.0 if batch.overlong_penalty is None else float((batch.overlong_penalty < 0).mean()),
            "overlong_penalty": 0.0 if batch.overlong_penalty is None else float(batch.overlong_penalty.mean()),
        }

    def merged_weights(self) -> dict[str, np.ndarray] | None:
        """LoRA only: the adapted matrices with the adapters merged in (W + B A), fp32 by
        HF name, on rank 0 (None elsewhere; a collective under FSDP2): what a merged
        checkpoint of the policy holds beyond the frozen base."""
        from learner.lora import merged_weights

        assert self.lora is not None, "merged_weights is for LoRA learners"
        arrays = merged_weights(self.model, full_tensor)
        return arrays if self.rank == 0 else None

    def weights(self) -> dict[str, np.ndarray] | None:
        """fp32 numpy copies by Hugging Face parameter name, on rank 0 (None elsewhere; under
        FSDP2 every rank must call it, it gathers the shards); a tied head appears once, as
        model.embed_tokens.weight (engines accept any subset of their names). With LoRA only
        the adapters, which each rollout worker merges into its base (learner/lora_merge.py)."""
        if self.rank != 0 and not self.sharded:
            return None
        if self.lora is not None:
            from learner.lora import adapter_weights

            arrays = adapter_weights(self.model, full_tensor)
            return arrays if self.rank == 0 else None
        arrays = {
            name: full_tensor(p.detach()).to("cpu", torch.float32).numpy().copy()
            for name, p in self.model.named_parameters()
        }
        return arrays if self.rank == 0 else None

    def state_dict(self) -> dict[str, Any]:
        """Whole (unsharded) states with every tensor on the CPU (a learner on either device
        loads them); under FSDP2 every rank must call it (it gathers). With LoRA "model"
        holds the adapters only, and there is no "reference": the frozen base and the
        reference come back from the base checkpoint."""
        trained = {name for name, p in self.model.named_parameters() if p.requires_grad}
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            model_state, optimizer_state = get_state_dict(self.model, self.optimizers, options=options)
            if self.lora is not None:
                model_state = {name: value for name, value in model_state.items() if name in trained}
            state = {"model": model_state, "optimizers": optimizer_state, "version": self.version, "fsdp2": True}
        else:
            model_state = self.model.state_dict()
            if self.lora is not None:
                model_state = {name: value for name, value in model_state.items() if name in trained}
            state = {
                "model": _on_cpu(model_state),
                "optimizers": [_on_cpu(o.state_dict()) for o in self.optimizers],
                "version": self.version,
            }
        if self.lora is not None:
            state["lora"] = True
        elif self.reference is not None:
            state["reference"] = _on_cpu(self.reference.state_dict())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("fsdp2", False) != self.sharded:
            raise ValueError("a learner state saved with data_parallel fsdp2 loads only into fsdp2 learners, and back")
        lora = self.lora is not None
        if state.get("lora", False) != lora:
            raise ValueError("a learner state saved with LoRA (model.lora.rank > 0) loads only into LoRA learners, and back")
        if lora:  # the adapters, and nothing else: the frozen base came from the checkpoint
            trained = {name for name, p in self.model.named_parameters() if p.requires_grad}
            if set(state["model"]) != trained:
                raise ValueError(
                    f"the saved adapters do not match this learner's (model.lora): {len(state['model'])} saved, "
                    f"{len(trained)} here, e.g. {sorted(set(state['model']) ^ trained)[:2]}"
                )
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            options = StateDictOptions(full_state_dict=True, strict=not lora)
            set_state_dict(self.model, self.optimizers, model_state_dict=state["model"],
                           optim_state_dict=state["optimizers"], options=options)  # fmt: skip
        else:
            self.model.load_state_dict(state["model"], strict=not lora)
            for optimizer, optimizer_state in zip(self.optimizers, state["optimizers"], strict=True):
                optimizer.load_state_dict(optimizer_state)
        if self.reference is not None and not lora:
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
