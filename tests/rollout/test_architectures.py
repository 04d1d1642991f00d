"""Llama-family checkpoints the paged forward pass supports, checked against transformers.

Each variant is a two-layer random model built with transformers and saved with
`save_pretrained`; both backends load it from that directory. Variants: Llama with an
untied head, a large rope_theta and an explicit head_dim; Llama with attention and MLP
biases; Llama-3 and linear RoPE scaling; Qwen2 (q/k/v bias only); Qwen3 (per-head q/k
RMSNorm, head_dim 24 != hidden 64 / 4 heads, untied head); Mistral without a sliding
window. Biases and Qwen3's q_norm / k_norm weights are drawn at random, since
transformers initialises them to zero and one, which would test nothing. The paged
engine runs each with the C kernels (decode_kernel auto: `cpu` on a CPU in float32, where
they can be built) and with torch ops. Qwen3 is saved in several safetensors shards, as
large Hugging Face checkpoints ship. Plus the configurations and directories the engine
refuses.
"""
from __future__ import annotations

import asyncio
import json

import pytest
import torch
from transformers import (
    AutoModelForCausalLM, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config,
)

from rollout import EngineConfig, SamplingParams, make_engine
from rollout.errors import UnsupportedModel, WeightUpdateError
from rollout.kernels.cpu.build import available
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
    "llama3-rope": lambda: LlamaConfig(**SHAPE, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 32,
    }),
    "llama-linear-rope": lambda: LlamaConfig(**SHAPE, rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 4.0}),
    "qwen2": lambda: Qwen2Config(**SHAPE),
    "qwen3": lambda: Qwen3Config(**SHAPE, head_dim=24, tie_word_embeddings=False),
    "mistral": lambda: MistralConfig(**SHAPE, sliding_window=None),
}
SHARDED = {"qwen3"}  # saved with a small max_shard_size
KERNELS = ["auto", "torch"]  # auto: the C kernels of rollout/kernels/cpu where they build
PROMPTS = random_prompts([3, 20, 37], seed=5, vocab_size=300)
GREEDY = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)


def build(config):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.1)
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                parameter.uniform_(0.3, 2.0)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """variant -> (model, its checkpoint directory, hf's greedy token ids read from that
    directory), built once per variant for both kernels."""
    cache = {}

    def get(variant):
        if variant not in cache:
            model = build(VARIANTS[variant]())
            directory = tmp_path_factory.mktemp(variant)
            model.save_pretrained(directory, max_shard_size="60KB" if variant in SHARDED else "1GB")
            hf = make_engine("hf", directory, None, EngineConfig(backend="hf"))
            expected = [c.token_ids for c in one_by_one(hf, PROMPTS, GREEDY)]
            hf.close()
            cache[variant] = (model, directory, expected)
        return cache[variant]

    return get


@pytest.mark.parametrize("decode_kernel", KERNELS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_saved_variant_matches_transformers(saved, variant, decode_kernel):
    model, directory, expected = saved(variant)
    if variant in SHARDED:
        assert len(list(directory.glob("model-*-of-*.safetensors"))) > 1
        assert (directory / "model.safetensors.index.json").is_file() and not (directory / "model.safetensors").exists()
    paged = make_engine("paged", directory, None, EngineConfig(num_kv_blocks=32, decode_kernel=decode_kernel))
    resolved = "cpu" if decode_kernel == "auto" and available() is None else "torch"
    assert paged.core.runner.decode_kernel == resolved
    assert [c.token_ids for c in gather(paged, PROMPTS, GREEDY)] == expected
    sampled = gather(paged, PROMPTS, SamplingParams(max_tokens=8, seed=1, ignore_eos=True))
    for c in sampled:
        ids = torch.tensor([c.prompt_ids + c.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(c.prompt_ids) - 1 : -1].log_softmax(-1)
        expected_lp = logits.gather(-1, torch.tensor(c.token_ids)[:, None])[:, 0]
        torch.testing.assert_close(torch.tensor(c.logprobs), expected_lp, atol=1e-4, rtol=0)
    paged.close()


def test_qwen3_q_and_k_norms_take_weight_updates(saved):
    """q_norm / k_norm are addressed by their HF names like every other parameter."""
    model, directory, _ = saved("qwen3")
    paged = make_engine("paged", directory, None, EngineConfig(num_kv_blocks=32))
    update = {n: (p.detach() * 1.5).numpy() for n, p in model.named_parameters() if n.endswith(("q_norm.weight", "k_norm.weight"))}
    assert len(update) == 2 * SHAPE["num_hidden_layers"]
    asyncio.run(paged.update_weights(update, version=1))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in update:
                p.mul_(1.5)
        expected = [model(torch.tensor([p])).logits[0, -1].argmax().item() for p in PROMPTS]
        for name, p in model.named_parameters():
            if name in update:
                p.div_(1.5)
    one_token = SamplingParams(max_tokens=1, temperature=0, ignore_eos=True)
    assert [c.token_ids[0] for c in gather(paged, PROMPTS, one_token)] == expected
    paged.close()


@pytest.mark.skipif(available() is not None, reason="the CPU kernels cannot be built here")
def test_the_c_rope_write_applies_qwen3_norms_like_torch():
    """The C kernel's q/k norm against TorchOps' (model.rms_norm per head, then RoPE).
    (Beside the other kernel-vs-reference tests' subject, tests/rollout/test_cpu_kernels.py.)"""
    from rollout.kernels.cpu.elementwise import rope_write
    from rollout.paged.model import Rope, apply_rope, rms_norm

    heads, kv_heads, head_dim, rows, eps = 4, 2, 24, 5, 1e-6
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * head_dim, generator=g) * 3
    q_norm, k_norm = torch.rand(head_dim, generator=g) + 0.5, torch.rand(head_dim, generator=g) + 0.5
    positions, slots = torch.tensor([0, 3, 7, 100, 5]), torch.tensor([3, -1, 0, 31, 8])
    rope = Rope(Qwen3Config(**SHAPE, head_dim=head_dim), head_dim, 128, torch.float32, "cpu")
    k_cache, v_cache = torch.zeros(16, 2, kv_heads, head_dim), torch.zeros(16, 2, kv_heads, head_dim)
    q = rope_write(qkv, positions, rope.cos, rope.signed_sin, k_cache, v_cache, slots, heads, q_norm, k_norm, eps)
    heads_of = qkv[:, : (heads + kv_heads) * head_dim].view(rows, -1, head_dim)
    cos, sin = rope(positions)
    expected_q = apply_rope(rms_norm(heads_of[:, :heads], q_norm, eps), cos, sin)
    expected_k = apply_rope(rms_norm(heads_of[:, heads:], k_norm, eps), cos, sin)
    torch.testing.assert_close(q, expected_q, atol=2e-6, rtol=1e-5)
    written = [0, 2, 3, 4]
    torch.testing.assert_close(k_cache.view(-1, kv_heads, head_dim)[slots[written]], expected_k[written], atol=2e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="q_norm and k_norm go together"):
        rope_write(qkv, positions, rope.cos, rope.signed_sin, k_cache, v_cache, slots, heads, q_norm)
    with pytest.raises(ValueError, match=r"q_norm and k_norm must have shape \(24,\)"):
        rope_write(qkv, positions, rope.cos, rope.signed_sin, k_cache, v_cache, slots, heads, q_norm[:8], k_norm)


def test_compile_decode_falls_back_to_eager_for_qwen3():
    """decode_graph.decode_forward has no q/k norm: the engine warns and decodes eagerly."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen3Config(**SHAPE, head_dim=24))
    with pytest.warns(RuntimeWarning, match="compile_decode: .*q_norm"):
        core = PagedCore.from_model(model, EngineConfig(num_kv_blocks=4, compile_decode=True))
    assert core.runner.decode_graph is None


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
        (GPT2Config(n_layer=1, n_embd=32, n_head=2), r"model_type 'gpt2'.*the hf or vllm backend"),
        (LlamaConfig(**SHAPE, hidden_act="gelu"), "hidden_act 'gelu'"),
        (LlamaConfig(**SHAPE, rope_parameters={"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}), "'dynamic'"),
        (Qwen2Config(**SHAPE, use_sliding_window=True, sliding_window=16), "use_sliding_window"),
        (Qwen3Config(**SHAPE, use_sliding_window=True, sliding_window=16, max_window_layers=0), "use_sliding_window"),
        (MistralConfig(**SHAPE, sliding_window=16), r"sliding_window 16: .*context \(256 tokens\)"),
    ],
)
def test_unsupported_configurations_are_refused_by_name(config, message):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(UnsupportedModel, match=message):
        PagedCore.from_model(model, EngineConfig(num_kv_blocks=32))


def test_a_sliding_window_that_covers_the_context_is_accepted():
    """Within its window sliding-window attention is full attention: Mistral's default
    window (4096) covers a 256-token model, and a 16-token window a 16-token engine."""
    torch.manual_seed(0)
    PagedCore.from_model(AutoModelForCausalLM.from_config(MistralConfig(**SHAPE)), EngineConfig(num_kv_blocks=4))
    narrow = AutoModelForCausalLM.from_config(MistralConfig(**SHAPE, sliding_window=16))
    assert PagedCore.from_model(narrow, EngineConfig(num_kv_blocks=4, max_model_len=16)).max_model_len == 16


def test_a_directory_without_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **SHAPE}))
    with pytest.raises(UnsupportedModel, match="no model.safetensors or model.safetensors.index.json"):
        PagedCore.from_model(tmp_path, EngineConfig(num_kv_blocks=4))
    with pytest.raises(UnsupportedModel, match="no config.json"):
        PagedCore.from_model(tmp_path / "missing", EngineConfig(num_kv_blocks=4))


def test_a_sharded_checkpoint_is_checked_like_a_single_file(tmp_path):
    """A missing shard is named; weights that do not fit config.json are refused naming the tensor."""
    model = build(LlamaConfig(**SHAPE))
    model.save_pretrained(tmp_path, max_shard_size="60KB")
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "intermediate_size": 2 * config["intermediate_size"]}))
    # whichever MLP matrix is checked first: gate/up (96, 64) vs (192, 64), or down (64, 96) vs (64, 192)
    with pytest.raises(WeightUpdateError, match=r"model\.layers\.\d\.mlp\.(gate|up|down)_proj\.weight: shape \((96, 64|64, 96)\), expected \((192, 64|64, 192)\)"):
        PagedCore.from_model(tmp_path, EngineConfig(num_kv_blocks=4))
    shards[-1].unlink()
    with pytest.raises(UnsupportedModel, match=f"names 1 shard files that are missing, e.g. {shards[-1].name}"):
        PagedCore.from_model(tmp_path, EngineConfig(num_kv_blocks=4))
