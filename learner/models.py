"""Building, saving and loading Llama-family policy models in Hugging Face format.

A preset becomes a `transformers.LlamaConfig` (or a `Qwen3Config`, for a preset whose
architecture is qwen3) sized to the tokenizer; a checkpoint
directory holds the model (config.json + safetensors) and its tokenizer side by side, so
`AutoModelForCausalLM.from_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)` load
it offline. Loading any local Llama-family checkpoint works the same way.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel
from transformers import PretrainedConfig, Qwen3Config, Qwen3ForCausalLM
from transformers import PreTrainedTokenizerBase

from learner.manifest import MANIFEST, ManifestError, verify_manifest
from learner.presets import PRESETS, ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CheckpointError(ValueError):
    """A model directory that cannot be loaded; the message names the directory and file."""


def llama_config(preset: str, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    shape = PRESETS[preset]
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=shape.tie_word_embeddings,
        rms_norm_eps=1e-5,
        rope_theta=10_000.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def qwen3_config(preset: str, tokenizer: PreTrainedTokenizerBase) -> Qwen3Config:
    """Qwen3: per-head RMSNorm of q and k before RoPE, no attention bias, no sliding window."""
    shape = PRESETS[preset]
    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        head_dim=shape.head_dim or shape.hidden_size // shape.num_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=shape.tie_word_embeddings,
        rms_norm_eps=1e-6,
        rope_theta=10_000.0,
        attention_bias=False,
        use_sliding_window=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def model_config(preset: str, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """The transformers config of a preset, by its architecture."""
    if PRESETS[preset].architecture == "qwen3":
        return qwen3_config(preset, tokenizer)
    assert PRESETS[preset].architecture == "llama", PRESETS[preset].architecture
    return llama_config(preset, tokenizer)


def init_model(config: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A randomly initialised preset model; the same seed gives the same weights."""
    torch.manual_seed(config.init_seed)
    settings = model_config(config.preset, tokenizer)
    model = Qwen3ForCausalLM(settings) if isinstance(settings, Qwen3Config) else LlamaForCausalLM(settings)
    return model.to(DTYPES[config.dtype])


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each layer's activations in the backward (non-reentrant), by the name the
    installed transformers gives it: `activation_checkpointing_enable` since 5.2x, where
    `gradient_checkpointing_enable` is a deprecated alias; the old name before that (the
    GPU machines' 5.17)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied embedding and head count once)."""
    return sum(p.numel() for p in model.parameters())


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))


def load_model(directory: str | Path, dtype: str = "float32") -> PreTrainedModel:
    """Load a local Hugging Face causal LM checkpoint, offline; a treadle checkpoint's
    manifest is verified first."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory}: not a model checkpoint (no config.json)")
    if (directory / MANIFEST).is_file():  # treadle wrote it: refuse missing, truncated or corrupt files
        try:
            verify_manifest(directory)
        except ManifestError as e:
            raise CheckpointError(str(e)) from None
    try:
        return AutoModelForCausalLM.from_pretrained(
            str(directory), dtype=DTYPES[dtype], local_files_only=True
        )
    except (OSError, ValueError, RuntimeError) as e:
        mismatch = _first_shape_mismatch(directory)
        raise CheckpointError(f"{directory}: cannot load the model: {mismatch or e}") from None


def _first_shape_mismatch(directory: Path) -> str | None:
    """The first tensor whose shape in the checkpoint's files differs from what its
    config.json builds (transformers only prints a table and says "size mismatch")."""
    from safetensors import safe_open
    from transformers import AutoConfig

    try:
        with torch.device("meta"):
            expected = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(directory))).state_dict()
    except (OSError, ValueError):
        return None
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                shape = tuple(f.get_slice(name).get_shape())
                if name in expected and tuple(expected[name].shape) != shape:
                    return (f"{file.name}: tensor {name} has shape {list(shape)}, but config.json "
                            f"gives {list(expected[name].shape)}")  # fmt: skip
    return None
