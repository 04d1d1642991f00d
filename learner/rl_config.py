"""Settings of the RL learner: advantages, the decoupled PPO loss, the optimizer, packing."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, one_of, require


@dataclass
class RLConfig:
    """One learner step: group advantages, decoupled PPO over packed thread sequences."""

    estimator: str = field(default="grpo", metadata=one_of("grpo", "dr_grpo", "rloo"))
    """Group advantage: grpo ((r - mean) / std), dr_grpo (r - mean) or rloo (leave-one-out)."""
    group_size: int = field(default=8, metadata=bounds(ge=1, le=1024))
    """Episodes sampled per problem (k); the k episodes of one problem form a group."""
    clip_low: float = field(default=0.2, metadata=bounds(ge=0.0, le=1.0))
    """PPO ratio clip below 1: the ratio pi_theta / pi_prox is clipped to at least
    1 - clip_low. It acts only from a step's second update on (ppo_epochs or mini_batches
    above 1); staleness is corrected by the truncated importance weight (weight_cap)."""
    clip_high: float = field(default=0.28, metadata=bounds(ge=0.0, le=10.0))
    """PPO ratio clip above 1 (DAPO's clip-higher): at most 1 + clip_high."""
    weight_cap: float = field(default=5.0, metadata=bounds(ge=1.0, le=1e6))
    """Truncation of the importance weight pi_prox / pi_behav of stale tokens."""
    kl_coef: float = field(default=0.0, metadata=bounds(ge=0.0, le=100.0))
    """Weight of the k3 KL to the initial model; 0 keeps no reference model."""
    normalization: str = field(default="token_mean", metadata=one_of("token_mean", "episode_mean"))
    """Average token losses over all trained tokens, or within each episode first."""
    parallel_bonus: float = field(default=0.0, metadata=bounds(ge=0.0, le=10.0))
    """ThreadWeaver bonus weight * (1 - critical/total tokens) added to correct episodes' rewards (0 = off)."""
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
    layout: str = field(default="packed", metadata=one_of("packed", "rows"))
    """How threads fill a micro-batch. `packed`: first fit into `rows` rows of `seq_len`
    tokens, with a block-diagonal mask. `rows`: one thread per row, threads sorted by
    length, as many rows of the longest one's width as fit in `rows` * `seq_len` tokens;
    no mask is needed, so causal attention skips the masked half (about 1.5x faster on
    APR's short threads on a CPU)."""
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
