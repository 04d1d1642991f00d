"""make_engine: an Engine (rollout/engine.py) from a model and an EngineConfig.

    from rollout import EngineConfig, make_engine
    engine = make_engine("paged", "runs/sft/model", tokenizer, EngineConfig(num_kv_blocks=4096))
    completion = await engine.generate(prompt_ids, SamplingParams(max_tokens=128, temperature=0))

`model` is a Hugging Face checkpoint directory or an in-memory `PreTrainedModel`. The
`paged` backend copies the weights into its own tensors; the `hf` backend runs the given
model object itself (a directory is loaded with `AutoModelForCausalLM`), so its weight
updates write into that object; the `vllm` backend loads a directory in vLLM's own
processes (an in-memory model is saved to a temporary directory first) and needs vLLM
installed (see rollout/vllm_engine.py). `tokenizer` (anything with `.decode(ids)`, or a decode
callable) is needed only for stop strings.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollout.async_engine import AsyncEngine
from rollout.stopping import as_decode
from rollout.config import EngineConfig

if TYPE_CHECKING:
    from rollout.vllm_engine import VLLMEngine



def make_engine(
    backend: str, model: str | Path | Any, tokenizer: Any = None, config: EngineConfig | None = None
) -> AsyncEngine | VLLMEngine:
    """Build the `backend` engine ("paged", "hf" or "vllm"); `config.backend`, if given, must agree."""
    config = config or EngineConfig(backend=backend)
    if config.backend != backend:
        raise ValueError(f"make_engine: backend {backend!r} but config.backend is {config.backend!r}")
    decode = as_decode(tokenizer)
    if backend == "hf":
        return AsyncEngine(_hf_core(model, decode, config))
    if backend == "paged":
        from rollout.paged.core import PagedCore

        return AsyncEngine(PagedCore.from_model(model, config, decode=decode))
    if backend == "vllm":
        from rollout.vllm_engine import VLLMEngine  # imports vllm only when the engine starts

        return VLLMEngine(model, config, decode=decode)
    raise ValueError(f"make_engine: unknown backend {backend!r} (known: paged, hf, vllm)")


def _hf_core(model: Any, decode, config: EngineConfig):
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedModel

    from rollout.hf_engine import HFCore

    dtype = getattr(torch, config.torch_dtype)
    if not isinstance(model, PreTrainedModel):
        model = AutoModelForCausalLM.from_pretrained(str(model), dtype=dtype, local_files_only=True)
    model = model.to(device=config.device, dtype=dtype)
    return HFCore(
        model, decode=decode, max_batch_size=config.max_num_seqs, max_model_len=config.max_model_len or None
    )
