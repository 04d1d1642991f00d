"""Generation engines behind one async interface (the Engine protocol of DESIGN.md).

    from rollout import EngineConfig, SamplingParams, make_engine
    engine = make_engine("paged", model_dir_or_model, tokenizer, EngineConfig())
    completion = await engine.generate(prompt_ids, SamplingParams(max_tokens=64, temperature=0))

Backends: `paged` (rollout/paged/: own forward pass, paged KV cache with automatic
prefix caching, continuous batching; CPU or GPU) and `hf` (rollout/hf_engine.py:
transformers generate, the reference and the baseline). Both are `AsyncEngine`s
(rollout/async_engine.py) driving a synchronous core. Never imports ray.
"""
from rollout.config import EngineConfig
from rollout.engine import Completion, Engine, EngineStats, FinishReason, SamplingParams
from rollout.factory import make_engine

__all__ = ["Completion", "Engine", "EngineConfig", "EngineStats", "FinishReason", "SamplingParams", "make_engine"]
