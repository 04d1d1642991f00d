"""EngineConfig: documented fields and messages that name the key and the allowed values."""
from __future__ import annotations

import dataclasses

import pytest

from configs.typed import ConfigError, build, field_docs
from rollout import EngineConfig


def test_every_field_is_documented():
    assert set(field_docs(EngineConfig)) == {f.name for f in dataclasses.fields(EngineConfig)}


def test_defaults_are_the_embedded_cpu_engine():
    config = build(EngineConfig, {})
    assert (config.backend, config.device, config.decode_kernel, config.block_size) == ("paged", "cpu", "auto", 16)
    assert config.cuda_graphs is True  # acts only with device=cuda (tests/rollout/test_cuda_graph.py)
    assert build(EngineConfig, {"device": "cuda", "cuda_graphs": False}).cuda_graphs is False


@pytest.mark.parametrize(
    "data, message",
    [
        ({"backend": "vllm2"}, "engine.backend: must be one of paged, hf, vllm; got 'vllm2'"),
        ({"block_size": 12}, "engine.block_size: must be a power of two; got 12"),
        ({"max_num_seqs": 256, "max_num_batched_tokens": 128}, "engine.max_num_batched_tokens: must be >= max_num_seqs (256)"),
        ({"decode_kernel": "triton"}, "engine.decode_kernel: triton runs on a GPU"),
        ({"decode_kernel": "cpu", "device": "cuda"}, "engine.decode_kernel: cpu runs float32 on a CPU (here float32 on cuda)"),
        ({"decode_kernel": "cpu", "dtype": "bfloat16"}, "engine.decode_kernel: cpu runs float32 on a CPU (here bfloat16 on cpu)"),
        ({"kv_cache_mb": 0}, "engine.kv_cache_mb: must be > 0"),
    ],
)
def test_bad_settings_name_the_key(data, message):
    with pytest.raises(ConfigError) as error:
        build(EngineConfig, data, path="engine")
    assert message in str(error.value)


def test_make_engine_refuses_a_disagreeing_backend(tiny, tokenizer):
    from rollout import make_engine

    with pytest.raises(ValueError, match="backend 'hf' but config.backend is 'paged'"):
        make_engine("hf", tiny, tokenizer, EngineConfig())
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        make_engine("tpu", tiny, tokenizer, EngineConfig(backend="tpu"))
