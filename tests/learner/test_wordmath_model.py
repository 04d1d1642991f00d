"""The Qwen3 preset (learner/presets.py `qwen3-5m`): built with q/k norm and the wordmath
tokenizer's vocabulary, the Llama presets unchanged, and served by the paged engine with
the same greedy tokens as transformers."""
from __future__ import annotations

import torch
from transformers import LlamaForCausalLM, Qwen3ForCausalLM

from learner.models import init_model, llama_config, model_config, save_model
from learner.presets import PRESETS, ModelConfig
from reasoning.math_task import math_prompt
from reasoning.tasks.prompts import PromptBuilder
from reasoning.wordmath.config import WordMathConfig
from reasoning.wordmath.problems import generate_problems
from reasoning.wordmath.rows import math_problem
from reasoning.wordmath.tokenizer import build_tokenizer
from rollout import EngineConfig, SamplingParams, make_engine
from tests.rollout.helpers import gather, one_by_one

SETTING = WordMathConfig(tokenizer_problems=200, num_train=0, num_val=3)


def test_the_qwen3_preset_and_the_llama_presets():
    tokenizer = build_tokenizer(SETTING)
    model = init_model(ModelConfig(preset="qwen3-5m"), tokenizer)
    assert isinstance(model, Qwen3ForCausalLM)
    config = model.config
    shape = (config.hidden_size, config.num_hidden_layers, config.head_dim, config.num_key_value_heads)
    assert shape == (256, 6, 64, 2)
    assert config.vocab_size == len(tokenizer) and config.eos_token_id == tokenizer.eos_token_id
    assert hasattr(model.model.layers[0].self_attn, "q_norm") and config.tie_word_embeddings
    assert 4_000_000 < sum(p.numel() for p in model.parameters()) < 6_000_000
    for name, preset in PRESETS.items():
        if preset.architecture == "llama":
            assert model_config(name, tokenizer).to_dict() == llama_config(name, tokenizer).to_dict()
    assert isinstance(init_model(ModelConfig(preset="tiny"), tokenizer), LlamaForCausalLM)


def test_the_paged_engine_serves_the_preset_like_transformers(tmp_path):
    tokenizer = build_tokenizer(SETTING)
    model = init_model(ModelConfig(preset="qwen3-5m"), tokenizer)
    with torch.no_grad():  # transformers starts the norms at one, which would test nothing
        for name, parameter in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                parameter.uniform_(0.5, 1.5)
    save_model(model, tokenizer, tmp_path)
    _, problems = generate_problems(SETTING)
    prompts = [PromptBuilder("chat").text_ids(tokenizer, math_prompt(math_problem(p)) + "\n") for p in problems]
    greedy = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    hf = make_engine("hf", tmp_path, None, EngineConfig(backend="hf"))
    expected = [c.token_ids for c in one_by_one(hf, prompts, greedy)]
    hf.close()
    paged = make_engine("paged", tmp_path, None, EngineConfig(num_kv_blocks=64))
    assert [c.token_ids for c in gather(paged, prompts, greedy)] == expected
    paged.close()
