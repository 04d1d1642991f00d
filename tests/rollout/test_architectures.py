"""Llama-family variants the paged forward pass supports, checked against transformers.

Each variant is a two-layer random model built here: an untied head with a large
rope_theta and an explicit head_dim, Llama with attention and MLP biases, Qwen2 (q/k/v
bias only) and Llama-3 RoPE scaling. Biases are drawn at random, since transformers
initialises them to zero and a zero bias would test nothing. Plus loading a checkpoint
directory, and the configurations the engine refuses.
"""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

from rollout import EngineConfig, SamplingParams, make_engine
from rollout.errors import UnsupportedModel
from rollout.paged.core import PagedCore
from tests.rollout.helpers import gather, one_by_one, random_prompts

SHAPE = dict(
    vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    intermediate_size=96, max_position_embeddings=256, eos_token_id=2, pad_token_id=0, bos_token_id=1,
)
VARIANTS = {
    "llama-untied-theta-head_dim": lambda: LlamaConfig(
        **SHAPE, tie_word_embeddings=False, head_dim=24, rope_parameters={"rope_type": "default", "rope_theta": 1e6}
    ),
    "llama-biases": lambda: LlamaConfig(**SHAPE, attention_bias=True, mlp_bias=True),
    "qwen2": lambda: Qwen2Config(**SHAPE),
    "llama3-rope": lambda: LlamaConfig(**SHAPE, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 32,
    }),
}
PROMPTS = random_prompts([3, 20, 37], seed=5, vocab_size=300)
GREEDY = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)


def build(config):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.1)
    return model


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_matches_transformers(variant):
    model = build(VARIANTS[variant]())
    paged = make_engine("paged", model, None, EngineConfig(num_kv_blocks=32))
    hf = make_engine("hf", model, None, EngineConfig(backend="hf"))
    expected = [c.token_ids for c in one_by_one(hf, PROMPTS, GREEDY)]
    assert [c.token_ids for c in gather(paged, PROMPTS, GREEDY)] == expected
    sampled = gather(paged, PROMPTS, SamplingParams(max_tokens=8, seed=1, ignore_eos=True))
    for c in sampled:
        ids = torch.tensor([c.prompt_ids + c.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(c.prompt_ids) - 1 : -1].log_softmax(-1)
        expected_lp = logits.gather(-1, torch.tensor(c.token_ids)[:, None])[:, 0]
        torch.testing.assert_close(torch.tensor(c.logprobs), expected_lp, atol=1e-4, rtol=0)
    paged.close()
    hf.close()


def test_a_checkpoint_directory_loads_in_both_backends(tiny, tokenizer, tmp_path):
    tiny.save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)
    prompts = random_prompts([9, 30], seed=2)
    in_memory = [c.token_ids for c in gather(make_engine("paged", tiny, tokenizer), prompts, GREEDY)]
    for backend in ("paged", "hf"):
        engine = make_engine(backend, tmp_path, tokenizer, EngineConfig(backend=backend, num_kv_blocks=16))
        assert [c.token_ids for c in gather(engine, prompts, GREEDY)] == in_memory, backend
        engine.close()


@pytest.mark.parametrize(
    "config, message",
    [
        (GPT2Config(n_layer=1, n_embd=32, n_head=2), "model_type 'gpt2'"),
        (LlamaConfig(**SHAPE, hidden_act="gelu"), "hidden_act 'gelu'"),
        (LlamaConfig(**SHAPE, rope_parameters={"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}), "'dynamic'"),
        (Qwen2Config(**SHAPE, use_sliding_window=True, sliding_window=16), "use_sliding_window"),
    ],
)
def test_unsupported_configurations_are_refused_by_name(config, message):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(UnsupportedModel, match=message):
        PagedCore.from_model(model, EngineConfig(num_kv_blocks=4))


def test_a_directory_without_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **SHAPE}))
    with pytest.raises(UnsupportedModel, match="no model.safetensors"):
        PagedCore.from_model(tmp_path, EngineConfig(num_kv_blocks=4))
    with pytest.raises(UnsupportedModel, match="no config.json"):
        PagedCore.from_model(tmp_path / "missing", EngineConfig(num_kv_blocks=4))
