"""Model presets: Llama- and Qwen3-architecture shapes that treadle can build from nothing.

`tiny` trains on a laptop CPU in minutes, `small` is the largest that is still practical
there, and `apr-228m` is the model of "Learning Adaptive Parallel Reasoning with Language
Models" (APR) for GPU users. The vocabulary size comes from the tokenizer, so parameter
counts below are for the Countdown tokenizer (about 1,100 tokens); `treadle model init`
prints the exact count. `qwen3-5m` is a Qwen3 (per-head q/k RMSNorm, an explicit
head_dim) of a user's shape in miniature, for the wordmath world on a CPU; its count is
for the wordmath tokenizer (652 tokens).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, one_of
from learner.lora_config import LoRAConfig


@dataclass(frozen=True)
class Preset:
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    architecture: str = "llama"
    """llama (transformers LlamaConfig) or qwen3 (Qwen3Config: q/k norm)."""
    head_dim: int = 0
    """Width of one attention head; 0: hidden_size / num_heads."""


PRESETS: dict[str, Preset] = {
    # ~1.0M parameters; two KV heads so grouped-query attention is exercised everywhere.
    "tiny": Preset(128, 4, 4, 2, 384, 1024, tie_word_embeddings=True),
    # ~13M parameters.
    "small": Preset(384, 8, 6, 2, 1024, 2048, tie_word_embeddings=True),
    # APR's: 18 layers, hidden 1024, 16 heads, FFN 2752, context 4096; ~228M parameters.
    "apr-228m": Preset(1024, 18, 16, 16, 2752, 4096, tie_word_embeddings=False),
    # Qwen3, ~4.9M parameters with the wordmath tokenizer: head_dim 64, q/k norm, two KV heads.
    # About 5,400 tokens/s of SFT (forward, backward, AdamW; rows of 512) on two CPU cores.
    "qwen3-5m": Preset(256, 6, 4, 2, 768, 1024, tie_word_embeddings=True, architecture="qwen3", head_dim=64),
}


@dataclass
class ModelConfig:
    """Which policy model to start from."""

    preset: str = field(default="tiny", metadata=one_of(*PRESETS))
    """Shape of a freshly initialised model (ignored when `path` is set)."""
    path: str | None = None
    """A local Hugging Face model directory (config, safetensors and tokenizer): the
    policy every stage starts from unless the stage's own checkpoint key is set
    (train.checkpoint, eval.checkpoint); SFT fine-tunes it instead of a fresh preset."""
    init_seed: int = field(default=0, metadata=bounds(ge=0, le=2**63 - 1))
    """Seed of the random initialisation of a preset."""
    dtype: str = field(default="float32", metadata=one_of("float32", "bfloat16", "float16"))
    """Parameter dtype; float32 on CPU."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    """Low-rank adapters (`treadle train`): rank 0 trains the whole policy; above 0 only
    adapters are trained, synced and checkpointed (learner/lora.py)."""
