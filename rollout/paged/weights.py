"""The paged engine's copy of a Llama-family checkpoint: shape, fused weights, HF names.

Supported `model_type`s, all with SiLU-gated MLPs and RMSNorm:
- llama: optional `attention_bias` (q/k/v and o) and `mlp_bias`;
- qwen2: q/k/v bias; `use_sliding_window` refused;
- qwen3: per-head RMSNorm of q and k (`q_norm`, `k_norm`, before RoPE), optional
  `attention_bias` (q/k/v and o); `use_sliding_window` refused;
- mistral: no biases; `sliding_window` accepted only when it covers the engine's whole
  context (None, or >= max_model_len: the window then never masks a key), which
  `ModelShape.check_context` checks once the engine has chosen that length.
All of them: grouped-query attention, an explicit `head_dim` (which may differ from
hidden_size / num_attention_heads), tied or untied output head, and RoPE of any type
transformers computes statically (default, linear, llama3, yarn, longrope; not
`dynamic`, whose frequencies change with the sequence length). Any other model_type
(gpt2, gemma, mixtral, ...) or setting raises `UnsupportedModel` naming the config field;
the `hf` backend (and `vllm`) run those.

q/k/v projections are stored as one fused matrix and gate/up as another, so a layer runs
two matmuls fewer; `hf_views()` maps every Hugging Face parameter name to the slice of
storage that holds it, which is how a checkpoint is loaded and how weight updates land.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from transformers import PretrainedConfig

from rollout.checkpoint import apply_weight_update, plan_weight_update
from rollout.errors import UnsupportedModel

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # buffers some older checkpoints saved


@dataclass(frozen=True)
class ModelShape:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float
    max_position_embeddings: int
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    tie_word_embeddings: bool
    qk_norm: bool = False
    """Qwen3: RMSNorm over each q and k head (weights [head_dim]) before RoPE."""
    sliding_window: int | None = None
    """Mistral: keys further back than this many positions are masked; the engine runs
    such a model only with a context no longer than the window (`check_context`)."""

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> "ModelShape":
        model_type = getattr(config, "model_type", None)
        if model_type not in MODEL_TYPES:
            raise UnsupportedModel(
                f"model_type {model_type!r}: the paged engine runs {', '.join(MODEL_TYPES)}; "
                "the hf or vllm backend serves other architectures (engine.backend=hf or vllm)"
            )
        if getattr(config, "hidden_act", "silu") != "silu":
            raise UnsupportedModel(f"hidden_act {config.hidden_act!r}: only silu (SwiGLU) is supported")
        if model_type in ("qwen2", "qwen3") and getattr(config, "use_sliding_window", False):
            raise UnsupportedModel("use_sliding_window: sliding-window attention is not supported")
        num_kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        if config.num_attention_heads % num_kv_heads:
            raise UnsupportedModel(
                f"num_attention_heads {config.num_attention_heads} is not a multiple of num_key_value_heads {num_kv_heads}"
            )
        attention_bias = bool(getattr(config, "attention_bias", False))
        return cls(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            num_kv_heads=num_kv_heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            rms_norm_eps=config.rms_norm_eps,
            max_position_embeddings=config.max_position_embeddings,
            qkv_bias=model_type == "qwen2" or (model_type in ("llama", "qwen3") and attention_bias),
            o_bias=model_type in ("llama", "qwen3") and attention_bias,
            mlp_bias=model_type == "llama" and bool(getattr(config, "mlp_bias", False)),
            tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            qk_norm=model_type == "qwen3",
            sliding_window=getattr(config, "sliding_window", None) if model_type == "mistral" else None,
        )

    def check_context(self, max_model_len: int) -> None:
        """Refuse a sliding window shorter than the context the engine will use: within
        the window, sliding-window attention is full causal attention."""
        if self.sliding_window is not None and self.sliding_window < max_model_len:
            raise UnsupportedModel(
                f"sliding_window {self.sliding_window}: sliding-window attention is not supported and the "
                f"engine's context ({max_model_len} tokens) is longer than the window; set "
                f"engine.max_model_len <= {self.sliding_window}, or use the hf or vllm backend"
            )


@dataclass
class LayerWeights:
    input_norm: torch.Tensor
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    post_norm: torch.Tensor
    gate_up: torch.Tensor
    gate_up_bias: torch.Tensor | None
    down: torch.Tensor
    down_bias: torch.Tensor | None
    q_norm: torch.Tensor | None = None  # [head_dim], shared by every q head (Qwen3)
    k_norm: torch.Tensor | None = None


class LlamaWeights:
    """Uninitialised storage for a model of `shape`; fill it with `load`."""

    def __init__(self, shape: ModelShape, dtype: torch.dtype, device: torch.device | str):
        def empty(*size: int) -> torch.Tensor:
            return torch.empty(size, dtype=dtype, device=device)

        s = shape
        self.shape = shape
        q, kv, hidden, ffn = s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim, s.hidden_size, s.intermediate_size
        self.embed = empty(s.vocab_size, hidden)
        self.layers = [
            LayerWeights(
                input_norm=empty(hidden),
                qkv=empty(q + 2 * kv, hidden),
                qkv_bias=empty(q + 2 * kv) if s.qkv_bias else None,
                o=empty(hidden, q),
                o_bias=empty(hidden) if s.o_bias else None,
                post_norm=empty(hidden),
                gate_up=empty(2 * ffn, hidden),
                gate_up_bias=empty(2 * ffn) if s.mlp_bias else None,
                down=empty(hidden, ffn),
                down_bias=empty(hidden) if s.mlp_bias else None,
                q_norm=empty(s.head_dim) if s.qk_norm else None,
                k_norm=empty(s.head_dim) if s.qk_norm else None,
            )
            for _ in range(s.num_layers)
        ]
        self.norm = empty(hidden)
        self.lm_head = self.embed if s.tie_word_embeddings else empty(s.vocab_size, hidden)

    def hf_views(self) -> dict[str, torch.Tensor]:
        """Hugging Face parameter name -> the view of our storage that holds it."""
        s = self.shape
        q, kv, ffn = s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim, s.intermediate_size
        views = {"model.embed_tokens.weight": self.embed, "model.norm.weight": self.norm, "lm_head.weight": self.lm_head}
        for i, layer in enumerate(self.layers):
            p = f"model.layers.{i}."
            views[p + "input_layernorm.weight"] = layer.input_norm
            views[p + "post_attention_layernorm.weight"] = layer.post_norm
            for kind, fused in (("weight", layer.qkv), ("bias", layer.qkv_bias)):
                if fused is not None:
                    views[p + f"self_attn.q_proj.{kind}"] = fused[:q]
                    views[p + f"self_attn.k_proj.{kind}"] = fused[q : q + kv]
                    views[p + f"self_attn.v_proj.{kind}"] = fused[q + kv :]
            for kind, fused in (("weight", layer.gate_up), ("bias", layer.gate_up_bias)):
                if fused is not None:
                    views[p + f"mlp.gate_proj.{kind}"] = fused[:ffn]
                    views[p + f"mlp.up_proj.{kind}"] = fused[ffn:]
            views[p + "self_attn.o_proj.weight"] = layer.o
            views[p + "mlp.down_proj.weight"] = layer.down
            if layer.o_bias is not None:
                views[p + "self_attn.o_proj.bias"] = layer.o_bias
            if layer.down_bias is not None:
                views[p + "mlp.down_proj.bias"] = layer.down_bias
            if layer.q_norm is not None:
                views[p + "self_attn.q_norm.weight"] = layer.q_norm
                views[p + "self_attn.k_norm.weight"] = layer.k_norm
        return views

    def load(self, state: Mapping[str, torch.Tensor]) -> None:
        """Fill every parameter from a full checkpoint state dict (HF names)."""
        views = self.hf_views()
        state = {k: v for k, v in state.items() if not k.endswith(IGNORED_SUFFIXES)}
        optional = {"lm_head.weight"} if self.shape.tie_word_embeddings else set()
        missing = sorted(set(views) - set(state) - optional)
        if missing:
            raise UnsupportedModel(f"checkpoint lacks {len(missing)} parameters, e.g. {', '.join(missing[:3])}")
        unexpected = sorted(set(state) - set(views))
        if unexpected:
            raise UnsupportedModel(f"checkpoint has parameters this architecture lacks, e.g. {', '.join(unexpected[:3])}")
        if self.shape.tie_word_embeddings:
            state.pop("lm_head.weight", None)  # the embedding is the head
        apply_weight_update(plan_weight_update(state, views))
