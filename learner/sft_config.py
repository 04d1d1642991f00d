"""Settings of the supervised stage (`treadle sft`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, one_of, require


@dataclass
class SFTConfig:
    """Supervised training on the task's search traces or a data file, with packing and warmup + cosine."""

    data_file: str = ""
    """A JSON lines or Parquet file of examples to train on instead of generating the
    task's search traces: each row has `messages` (a chat; the assistant messages are
    trained) or `prompt` + `response` (text; the prompt is built as task.prompt_format
    says and the response is trained), and optionally an `id` (reasoning/sft_data.py).
    Empty: the task's traces (countdown)."""

    steps: int = field(default=3000, metadata=bounds(ge=1, le=10_000_000))
    """Optimizer steps."""
    seq_len: int = field(default=512, metadata=bounds(ge=16, le=65_536))
    """Tokens per packed row; longer trace threads and examples are left out."""
    rows: int = field(default=4, metadata=bounds(ge=1, le=4096))
    """Packed rows per step: a step trains on at most rows * seq_len tokens."""
    lr: float = field(default=2e-3, metadata=bounds(gt=0.0, le=1.0))
    """Peak learning rate (AdamW, and Muon's when optimizer is muon)."""
    min_lr_ratio: float = field(default=0.1, metadata=bounds(ge=0.0, le=1.0))
    """The cosine ends at min_lr_ratio * lr."""
    warmup_steps: int = field(default=100, metadata=bounds(ge=0, le=1_000_000))
    """Linear warmup steps."""
    weight_decay: float = field(default=0.01, metadata=bounds(ge=0.0, le=1.0))
    """Decoupled weight decay of matrices (never of norms and biases)."""
    beta1: float = field(default=0.9, metadata=bounds(ge=0.0, le=0.9999))
    """AdamW beta1."""
    beta2: float = field(default=0.99, metadata=bounds(ge=0.0, le=0.99999))
    """AdamW beta2."""
    grad_clip: float = field(default=1.0, metadata=bounds(ge=0.0, le=1e6))
    """Clip the global gradient norm to this (0 = off)."""
    optimizer: str = field(default="adamw", metadata=one_of("adamw", "muon"))
    """adamw, or muon: torch.optim.Muon for hidden matrices and AdamW for the rest."""
    log_every: int = field(default=20, metadata=bounds(ge=1, le=1_000_000))
    """Steps between lines of sft_metrics.jsonl."""
    checkpoint_every: int = field(default=500, metadata=bounds(ge=1, le=10_000_000))
    """Steps between resumable checkpoints."""
    keep_checkpoints: int = field(default=2, metadata=bounds(ge=1, le=1000))
    """Most recent checkpoints kept on disk."""
    layout: str = field(default="packed", metadata=one_of("packed", "shared"))
    """`packed`: every trace thread (or example) a sequence of its own, packed side by side.
    `shared`: prefix sharing (learner/prefix_tree.py): the threads of one trace episode as
    one token tree, so the context a parallel block's branches continue is computed and
    trained once, not once per branch; the same trained tokens and loss, fewer tokens."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward (transformers' gradient
    checkpointing): activation memory of one layer instead of all, for about a third
    more compute."""
    device: str = field(default="cpu", metadata=one_of("cpu", "cuda"))
    """Where to train; on cuda the forward runs under bfloat16 autocast."""
    num_threads: int = field(default=2, metadata=bounds(ge=1, le=256))
    """torch intra-op threads (keep at most the number of cores)."""
    seed: int = field(default=0, metadata=bounds(ge=0, le=2**63 - 1))
    """Seed of the data order."""

    def validate(self) -> None:
        require(
            not self.data_file or self.data_file.endswith((".jsonl", ".parquet")), "data_file",
            f"must be a .jsonl or .parquet file; got {self.data_file!r}",
        )  # fmt: skip
        require(self.warmup_steps < self.steps, "warmup_steps", f"must be < steps ({self.warmup_steps} >= {self.steps})")
