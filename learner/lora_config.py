"""Settings of a LoRA policy (`model.lora`): which matrices get adapters, of what rank.

Rank 0 (the default) trains the whole model. With a rank above 0 the learner freezes
the base model and trains low-rank adapters with peft (learner/lora.py); what reaches
the rollout engines and the checkpoints is described there.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, require

# The linear layers of a Llama/Qwen/Mistral decoder layer: every backend updates them by
# their Hugging Face names. Embeddings and the LM head are left out: a tied head is the
# embedding, and peft's embedding adapters merge differently.
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoRAConfig:
    """Low-rank adapters on the policy's linear layers; rank 0 is full fine-tuning."""

    rank: int = field(default=0, metadata=bounds(ge=0, le=4096))
    """Rank r of each adapter (W + B A * alpha / r with A [r, in], B [out, r]); 0 turns
    LoRA off and the learner trains every parameter."""
    alpha: float = field(default=16.0, metadata=bounds(gt=0.0, le=1e6))
    """Scale numerator: the adapter's product is multiplied by alpha / rank."""
    target_modules: list[str] = field(default_factory=lambda: list(LINEAR_MODULES))
    """Names of the linear layers that get an adapter in every decoder layer, from
    q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj."""
    dropout: float = field(default=0.0, metadata=bounds(ge=0.0, le=0.9))
    """Dropout on the adapter's input during the learner's forwards. Above 0 the learner's
    logprobs (pi_prox, the PPO ratio) are noisy and no longer match the engine's."""

    init_seed: int = field(default=0, metadata=bounds(ge=0, le=2**63 - 1))
    """Seed of the adapters' initialisation (A random, B zero): every learner rank starts
    from the same adapters."""

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    def validate(self) -> None:
        unknown = [name for name in self.target_modules if name not in LINEAR_MODULES]
        require(not unknown, "target_modules", f"unknown modules {unknown}; choose from {', '.join(LINEAR_MODULES)}")
        require(bool(self.target_modules), "target_modules", "name at least one module")
        require(
            len(set(self.target_modules)) == len(self.target_modules), "target_modules",
            f"names a module twice: {self.target_modules}",
        )  # fmt: skip
