"""Settings of the RL learner: advantages, the policy loss and its off-policy correction,
reward shaping, the optimizer, packing.

Algorithms and the settings that select them (README's table):
- GRPO / Dr.GRPO / RLOO: estimator grpo | dr_grpo | rloo, loss ppo.
- DAPO: loss ppo, clip_high > clip_low (clip-higher; 0.28 / 0.2 by default),
  normalization token_mean, overlong_buffer > 0 with overlong_max_tokens, dynamic_sampling.
- GSPO: loss gspo (gspo_clip_low / gspo_clip_high), normalization episode_mean.
- CISPO: loss cispo (cispo_clip_low / cispo_clip_high), normalization token_mean.
- REINFORCE++: estimator reinforce_pp; REINFORCE++-baseline: estimator reinforce_pp_baseline.
- Off-policy corrections, with any loss: off_policy tis (weight_cap, weight_cap_mode) |
  icepop (icepop_low / icepop_high) | seq_mask (seq_mask_low / seq_mask_high).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, one_of, require


@dataclass
class RLConfig:
    """One learner step: group advantages, a policy loss over packed thread sequences."""

    estimator: str = field(
        default="grpo", metadata=one_of("grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline")
    )
    """Advantage of an episode: grpo ((r - mean) / std), dr_grpo (r - mean), rloo
    (leave-one-out), reinforce_pp (REINFORCE++: r, no baseline) or reinforce_pp_baseline
    (r - group mean); both REINFORCE++ forms are then normalized over the whole batch,
    (A - mean) / std over its trained tokens (OpenRLHF)."""
    group_size: int = field(default=8, metadata=bounds(ge=1, le=1024))
    """Episodes sampled per problem (k); the k episodes of one problem form a group."""
    grpo_std: str = field(default="population", metadata=one_of("population", "sample"))
    """grpo's std over a group: population (divide by k; DeepSeekMath) or sample (k - 1,
    Bessel-corrected, as verl's torch.std)."""
    singleton_advantage: str = field(default="zero", metadata=one_of("zero", "reward"))
    """Advantage of a group of one: zero (no baseline, no signal) or its raw reward (verl).
    REINFORCE++ without a baseline ignores it (its advantage is the reward anyway)."""
    loss: str = field(default="ppo", metadata=one_of("ppo", "gspo", "cispo"))
    """Policy loss: ppo (decoupled PPO, clip_low / clip_high, dual_clip; DAPO with
    clip-higher), gspo (sequence-level ratio and clip, gspo_clip_*), or cispo (REINFORCE
    with a clipped stop-gradient ratio, cispo_clip_*). Each uses the off_policy correction."""
    clip_low: float = field(default=0.2, metadata=bounds(ge=0.0, le=1.0))
    """PPO ratio clip below 1: the ratio pi_theta / pi_prox is clipped to at least
    1 - clip_low. It acts only from a step's second update on (ppo_epochs or mini_batches
    above 1); staleness is corrected by the truncated importance weight (weight_cap)."""
    clip_high: float = field(default=0.28, metadata=bounds(ge=0.0, le=10.0))
    """PPO ratio clip above 1 (DAPO's clip-higher): at most 1 + clip_high."""
    dual_clip: float = field(default=0.0, metadata=bounds(ge=0.0, le=100.0))
    """PPO dual clip c (verl's clip_ratio_c, which defaults to 3): for a negative advantage
    the token loss is at most c * |A|. 0 = off; otherwise it must be > 1. loss ppo only."""
    gspo_clip_low: float = field(default=3e-4, metadata=bounds(ge=0.0, le=1.0))
    """GSPO's sequence-ratio clip below 1 (the paper: 3e-4): s_i >= 1 - gspo_clip_low."""
    gspo_clip_high: float = field(default=4e-4, metadata=bounds(ge=0.0, le=10.0))
    """GSPO's sequence-ratio clip above 1 (the paper: 4e-4): s_i <= 1 + gspo_clip_high."""
    cispo_clip_low: float = field(default=1.0, metadata=bounds(ge=0.0, le=1.0))
    """CISPO's ratio clip below 1; 1.0 (the default, as MiniMax-M1) sets no lower bound."""
    cispo_clip_high: float = field(default=0.28, metadata=bounds(ge=0.0, le=100.0))
    """CISPO's ratio clip above 1: the stop-gradient coefficient is at most 1 + cispo_clip_high."""
    off_policy: str = field(default="tis", metadata=one_of("tis", "icepop", "seq_mask"))
    """Correction for tokens sampled by an older or different policy, from the ratio
    rho = pi_prox / pi_behav (learner/off_policy.py): tis (truncated importance weight,
    weight_cap and weight_cap_mode), icepop (tokens with rho outside [icepop_low,
    icepop_high] get weight 0, the rest 1), seq_mask (an episode whose geometric-mean rho
    over its whole thread tree lies outside [seq_mask_low, seq_mask_high] is masked
    entirely; the others are weighted by it). Masked tokens still count in the normalization."""
    weight_cap: float = field(default=5.0, metadata=bounds(ge=1.0, le=1e6))
    """Cap of the importance weight pi_prox / pi_behav of stale tokens (off_policy tis)."""
    weight_cap_mode: str = field(default="truncate", metadata=one_of("truncate", "mask"))
    """What the cap does: truncate (min(rho, cap)) or mask (weight 0 above the cap, rho
    below it: AReaL's default, with the same cap of 5)."""
    icepop_low: float = field(default=0.5, metadata=bounds(ge=0.0, le=1.0))
    """IcePop: tokens with pi_prox / pi_behav below this get weight 0."""
    icepop_high: float = field(default=5.0, metadata=bounds(ge=1.0, le=1e6))
    """IcePop: tokens with pi_prox / pi_behav above this get weight 0."""
    seq_mask_low: float = field(default=0.8, metadata=bounds(ge=0.0, le=1.0))
    """seq_mask: episodes whose geometric-mean pi_prox / pi_behav is below this are masked.
    (Engine-mismatch-only setups use a band much closer to 1, e.g. 0.999.)"""
    seq_mask_high: float = field(default=1.25, metadata=bounds(ge=1.0, le=1e6))
    """seq_mask: episodes whose geometric-mean pi_prox / pi_behav is above this are masked."""
    kl_coef: float = field(default=0.0, metadata=bounds(ge=0.0, le=100.0))
    """Weight of the k3 KL to the initial model; 0 keeps no reference model."""
    normalization: str = field(
        default="token_mean", metadata=one_of("token_mean", "episode_mean", "seq_mean_token_sum")
    )
    """How token losses are reduced: token_mean (over all trained tokens of the update),
    episode_mean (within each episode first, then over episodes: verl's
    seq-mean-token-mean), or seq_mean_token_sum (summed within each episode, averaged over
    episodes: verl's seq-mean-token-sum). An episode is all threads of one tree. Counts
    are over the whole update, so data-parallel ranks make the update one learner would."""
    parallel_bonus: float = field(default=0.0, metadata=bounds(ge=0.0, le=10.0))
    """ThreadWeaver bonus weight * min(1 - critical/total tokens, parallel_bonus_cap) added
    to correct episodes' rewards (0 = off)."""
    parallel_bonus_cap: float = field(default=1.0, metadata=bounds(gt=0.0, le=1.0))
    """Most of the acceleration term (1 - critical/total) the bonus pays for."""
    overlong_buffer: int = field(default=0, metadata=bounds(ge=0, le=10_000_000))
    """DAPO's overlong reward shaping (0 = off): an episode whose length L exceeds
    overlong_max_tokens - overlong_buffer gets overlong_penalty_factor *
    clip(((max - buffer) - L) / buffer, -1, 0) added to its reward before the estimator.
    L is the episode's critical path (the longest chain of tokens generated one after
    another: a sequential episode's whole output), so parallel threads are not punished."""
    overlong_max_tokens: int = field(default=0, metadata=bounds(ge=0, le=10_000_000))
    """The length at which the overlong penalty is full (DAPO: the generation limit);
    needed when overlong_buffer > 0, and at least overlong_buffer."""
    overlong_penalty_factor: float = field(default=1.0, metadata=bounds(ge=0.0, le=100.0))
    """The largest overlong penalty (DAPO and verl: 1)."""
    dynamic_sampling: bool = False
    """DAPO's dynamic sampling: the buffer drops every complete group whose verified rewards
    are all equal (no signal under a group baseline), counted as dropped with reason
    "zero_variance", and the learner gets other groups instead (the dropped slots return
    to the admission capacity, so the workers generate more). Needs group_size >= 2."""
    dynamic_sampling_max_batches: int = field(default=10, metadata=bounds(ge=0, le=1_000_000))
    """Stop the run with an error when dynamic sampling has dropped this many batches'
    worth of groups since the learner's last batch (0 = wait forever), as verl's
    max_num_gen_batches: a task that is always solved, or never, would otherwise hang."""
    ppo_epochs: int = field(default=1, metadata=bounds(ge=1, le=100))
    """Passes over each batch; with more than one, the PPO ratio clip acts."""
    mini_batches: int = field(default=1, metadata=bounds(ge=1, le=4096))
    """Optimizer updates per pass, each on an equal share of the batch's micro-batches
    (capped at their number)."""
    lr: float = field(default=1e-5, metadata=bounds(gt=0.0, le=1.0))
    """Learning rate (constant), of AdamW and of Muon when optimizer is muon."""
    weight_decay: float = field(default=0.0, metadata=bounds(ge=0.0, le=1.0))
    """Decoupled weight decay of matrices (never of norms and biases)."""
    beta1: float = field(default=0.9, metadata=bounds(ge=0.0, le=0.9999))
    """AdamW beta1."""
    beta2: float = field(default=0.99, metadata=bounds(ge=0.0, le=0.99999))
    """AdamW beta2."""
    grad_clip: float = field(default=1.0, metadata=bounds(ge=0.0, le=1e6))
    """Clip the global gradient norm to this (0 = off)."""
    optimizer: str = field(default="adamw", metadata=one_of("adamw", "muon"))
    """adamw, or muon: torch.optim.Muon for hidden matrices and AdamW for the rest."""
    seq_len: int = field(default=1024, metadata=bounds(ge=16, le=65_536))
    """Tokens per packed row; a batch with a longer thread widens its rows to fit it (no
    thread is ever truncated). Shorter rows cost less attention per token."""
    logprob_head: str = field(default="full", metadata=one_of("full", "chunked", "triton"))
    """How the learner gets token logprobs and entropies: from the model's full logits, or
    from hidden states and the LM head in chunks without [tokens, vocab] logits (chunked:
    torch; triton: the GPU kernel). Chunked saves memory at large vocabularies and costs
    a recomputation of the logits in the backward."""
    data_parallel: str = field(default="replicate", metadata=one_of("replicate", "fsdp2"))
    """With several learners (train.num_learners): a whole model copy per rank with
    all-reduced gradients, or FSDP2-sharded parameters, gradients and optimizer states
    (AdamW only)."""
    rows: int = field(default=4, metadata=bounds(ge=1, le=4096))
    """Packed rows per micro-batch (one forward); a step runs as many micro-batches as it needs."""
    layout: str = field(default="packed", metadata=one_of("packed", "rows", "shared"))
    """How threads fill a micro-batch. `packed`: first fit into `rows` rows of `seq_len`
    tokens, with a block-diagonal mask. `rows`: one thread per row, threads sorted by
    length, as many rows of the longest one's width as fit in `rows` * `seq_len` tokens;
    no mask is needed, so causal attention skips the masked half (about 1.5x faster on
    APR's short threads on a CPU). `shared`: prefix sharing (learner/prefix_tree.py):
    the threads of each group as one token tree, every shared prefix (a parallel block's
    parent context, which each branch continues; the group's prompt) computed once,
    with tree attention; the same logprobs as `packed` with fewer tokens."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward (transformers' gradient
    checkpointing): activation memory of one layer instead of all, for about a third
    more compute."""
    device: str = field(default="cpu", metadata=one_of("cpu", "cuda"))
    """Where the policy, the reference model, the optimizer states and the micro-batches
    live: cpu, or cuda (the learner process's current GPU; Ray gives each learner actor
    one). Several learners talk over gloo on cpu and NCCL on cuda (learner/distributed.py)."""
    dtype: str = field(default="float32", metadata=one_of("float32", "bfloat16", "auto"))
    """Compute precision of the model's forward. float32: everything in fp32. bfloat16
    (cuda only): the forward and backward run under bf16 autocast, while the master
    weights, gradients and optimizer states stay fp32 and the log-softmax, entropy and
    loss are computed in fp32 from the bf16 logits (or hidden states). auto: bfloat16 on
    cuda, float32 on cpu (so one experiment file serves both with only rl.device changed)."""

    @property
    def compute_dtype(self) -> str:
        """The dtype in effect: `dtype`, with auto resolved by the device."""
        if self.dtype == "auto":
            return "bfloat16" if self.device == "cuda" else "float32"
        return self.dtype

    def validate(self) -> None:
        require(
            not (self.data_parallel == "fsdp2" and self.optimizer == "muon"), "optimizer",
            "muon is not supported with data_parallel fsdp2; use adamw",
        )  # fmt: skip
        require(
            not (self.dtype == "bfloat16" and self.device != "cuda"), "dtype",
            "bfloat16 needs device cuda (bf16 autocast is a GPU speed-up; a CPU learner "
            "computes in float32); set device=cuda or dtype=float32",
        )  # fmt: skip
        require(self.clip_low < 1.0, "clip_low", f"must be < 1 so the clipped ratio stays positive; got {self.clip_low}")
        require(self.dual_clip == 0 or self.dual_clip > 1, "dual_clip", f"must be 0 (off) or > 1; got {self.dual_clip}")
        require(self.icepop_low < self.icepop_high, "icepop_low", "must be below icepop_high")
        require(self.seq_mask_low < self.seq_mask_high, "seq_mask_low", "must be below seq_mask_high")
        require(
            self.overlong_buffer == 0 or self.overlong_max_tokens >= self.overlong_buffer, "overlong_max_tokens",
            f"must be >= overlong_buffer ({self.overlong_buffer}) when overlong shaping is on; "
            f"set it to the generation limit (e.g. train.max_new_tokens); got {self.overlong_max_tokens}",
        )  # fmt: skip
        require(
            not self.dynamic_sampling or self.group_size >= 2, "dynamic_sampling",
            "needs group_size >= 2 (every group of one has equal rewards and would be dropped)",
        )  # fmt: skip
