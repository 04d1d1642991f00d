"""LoRA policies (learner/lora.py): only adapters train, the touched matrices are synced merged
and land in the paged and hf engines, the learner state holds the adapters, and
`treadle model merge-lora` rebuilds the adapter model's logits and greedy outputs."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from actors.cli import main as treadle
from configs.typed import ConfigError, build
from learner.lora import adapter_bytes, merged_weights, save_adapter, trainable_state
from learner.lora_merge import AdapterMerger
from learner.lora_config import LINEAR_MODULES, LoRAConfig
from learner.models import load_model, save_model
from learner.presets import ModelConfig
from learner.rl_batch import build_batch
from learner.rl_config import RLConfig
from learner.label_logprobs import label_logprobs
from learner.rl_step import RLLearner
from reasoning.episode_table import to_table
from rollout import EngineConfig, SamplingParams, make_engine
from tests.learner.test_rl_step import mean_trained_logprob, self_sampled_rows, tiny, tokenizer  # noqa: F401 (a fixture)
from tests.rollout.helpers import gather, random_prompts

GREEDY = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
CONFIG = RLConfig(estimator="dr_grpo", lr=1e-2, seq_len=32, rows=1, grad_clip=0.0)
LAYERS = 4  # the tiny preset


def randomize_adapters(learner: RLLearner, seed: int = 0, scale: float = 0.3) -> None:
    """Non-zero B matrices (fresh adapters have B = 0, so they change nothing)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in learner.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * scale)


def peft_merged(learner: RLLearner) -> dict[str, torch.Tensor]:
    """peft's own merge of a copy: the reference of the synced matrices."""
    return copy.deepcopy(learner.peft).merge_and_unload().state_dict()


def test_a_step_trains_the_adapters_and_leaves_the_base_alone(tokenizer):
    model = tiny(tokenizer)
    base = {name: t.clone() for name, t in model.state_dict().items()}
    rows = self_sampled_rows(model, [1.0, 0.0])
    before = {e: mean_trained_logprob(model, rows, e) for e in ("p0", "p1")}
    learner = RLLearner(model, CONFIG, lora=LoRAConfig(rank=4))
    trained = [name for name, p in learner.model.named_parameters() if p.requires_grad]
    assert len(trained) == LAYERS * len(LINEAR_MODULES) * 2 and all(".lora_" in name for name in trained)
    assert sum(len(g["params"]) for o in learner.optimizers for g in o.param_groups) == len(trained)
    learner.step(rows)
    after = {e: mean_trained_logprob(learner.model, rows, e) for e in ("p0", "p1")}
    assert after["p0"] > before["p0"] and after["p1"] < before["p1"]  # the policy did learn
    state = learner.model.state_dict()
    for name, value in state.items():
        if ".lora_" not in name:  # frozen: bit for bit the base (peft's layers keep it as base_layer)
            torch.testing.assert_close(value, base[name.replace(".base_layer", "")], rtol=0, atol=0)
    b_matrices = [value for name, value in state.items() if ".lora_B." in name]
    assert all(bool(b.abs().sum() > 0) for b in b_matrices)  # every B moved off its zero start


def test_weights_are_the_adapters_and_a_worker_merges_them_into_its_base(tokenizer):
    model = tiny(tokenizer)
    merger = AdapterMerger.from_state(model.state_dict())  # what a rollout worker loads: the base checkpoint
    learner = RLLearner(model, CONFIG, lora=LoRAConfig(rank=4, alpha=8.0))
    randomize_adapters(learner)
    weights = learner.weights()
    modules = [f"model.layers.{i}.{kind}.{m}" for i in range(LAYERS) for kind, names in
               (("self_attn", LINEAR_MODULES[:4]), ("mlp", LINEAR_MODULES[4:])) for m in names]  # fmt: skip
    assert set(weights) == {m + suffix for m in modules for suffix in (".lora_A.weight", ".lora_B.weight")}
    assert all(a.dtype == np.float32 for a in weights.values())
    # What travels: the adapters alone (rank 4: A [4, in] and B [out, 4] per matrix).
    assert sum(a.nbytes for a in weights.values()) == adapter_bytes(learner.model)
    merged = merger.merge(weights)
    reference = peft_merged(learner)
    assert set(merged) == {m + ".weight" for m in modules}
    for name, array in merged.items():
        assert array.dtype == np.float32
        torch.testing.assert_close(torch.from_numpy(array), reference[name], rtol=0, atol=1e-6)
    # tiny: the merged matrices are 786,432 of the model's 1,049,728 parameters; the adapters a fraction.
    assert sum(a.nbytes for a in merged.values()) == 786_432 * 4 > 10 * adapter_bytes(learner.model)


def test_a_target_subset_merges_whole_fused_groups(tokenizer):
    model = tiny(tokenizer)
    base = {name: t.clone() for name, t in model.state_dict().items()}
    merger = AdapterMerger.from_state(model.state_dict())
    learner = RLLearner(model, CONFIG, lora=LoRAConfig(rank=2, target_modules=["q_proj", "v_proj"]))
    randomize_adapters(learner)
    merged = merger.merge(learner.weights())
    # k_proj has no adapter but shares the fused q/k/v matrix: it comes along unchanged (vLLM reloads whole layers).
    assert set(merged) == {f"model.layers.{i}.self_attn.{m}_proj.weight" for i in range(LAYERS) for m in "qkv"}
    q, k = "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"
    np.testing.assert_array_equal(merged[k], base[k])
    assert not np.array_equal(merged[q], base[q])
    assert set(merger.merge(learner.weights())) == set(merged)  # from the base again: no drift across syncs


@pytest.mark.parametrize("backend", ["paged", "hf"])
def test_a_partial_update_lands_in_the_engine(tokenizer, backend):
    model = tiny(tokenizer)
    engine = make_engine(backend, copy.deepcopy(model), tokenizer, EngineConfig(backend=backend, num_kv_blocks=64))
    merger = AdapterMerger.from_state(model.state_dict())
    learner = RLLearner(model, CONFIG, lora=LoRAConfig(rank=4))
    randomize_adapters(learner)
    merged = copy.deepcopy(learner.peft).merge_and_unload()
    reference = make_engine(backend, merged, tokenizer, EngineConfig(backend=backend, num_kv_blocks=64))
    prompts = random_prompts([5, 9, 13], seed=3, vocab_size=1000)
    try:
        before = gather(engine, prompts, GREEDY)
        asyncio_run(engine.update_weights(merger.merge(learner.weights()), version=1))
        after = gather(engine, prompts, GREEDY)
        expected = gather(reference, prompts, GREEDY)
    finally:
        engine.close()
        reference.close()
    assert [c.token_ids for c in after] == [c.token_ids for c in expected]
    assert [c.token_ids for c in after] != [c.token_ids for c in before]
    assert all(c.versions == [1] * 8 for c in after)
    for ours, theirs in zip(after, expected):
        np.testing.assert_allclose(ours.logprobs, theirs.logprobs, atol=1e-4)


def asyncio_run(coroutine):
    import asyncio

    return asyncio.run(coroutine)


def test_both_logprob_heads_see_the_adapters(tokenizer):
    model = tiny(tokenizer)
    rows = self_sampled_rows(model, [1.0, 0.0])
    (mb, *_) = build_batch(to_table(rows), estimator="dr_grpo", seq_len=32, rows_per_micro_batch=2).micro_batches
    with torch.no_grad():
        base_logprobs, _ = label_logprobs(model, mb, "full")
        learner = RLLearner(model, CONFIG, lora=LoRAConfig(rank=4))
        randomize_adapters(learner)
        full, full_entropy = label_logprobs(learner.model, mb, "full")
        chunked, chunked_entropy = label_logprobs(learner.model, mb, "chunked")
    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-5)
    torch.testing.assert_close(chunked_entropy, full_entropy, rtol=0, atol=1e-4)
    assert float((full - base_logprobs).abs().max()) > 1e-2


def test_the_state_holds_adapters_and_their_optimizer_and_resumes_exactly(tokenizer):
    rows = self_sampled_rows(tiny(tokenizer), [1.0, 0.0])
    config = RLConfig(estimator="dr_grpo", lr=1e-2, seq_len=32, rows=1, kl_coef=0.1)
    learner = RLLearner(tiny(tokenizer), config, lora=LoRAConfig(rank=4))
    learner.step(rows)
    state = learner.state_dict()
    assert state["lora"] and "reference" not in state  # both come back from the base checkpoint
    assert set(state["model"]) == {n for n, p in learner.model.named_parameters() if p.requires_grad}
    restored = RLLearner(tiny(tokenizer), config, lora=LoRAConfig(rank=4))
    restored.load_state_dict(copy.deepcopy(state))  # as from learner.pt: no tensor shared with `learner`
    assert restored.version == 1
    learner.step(rows)
    restored.step(rows)  # the same Adam moments: the same second step
    for name, array in learner.weights().items():
        np.testing.assert_array_equal(restored.weights()[name], array)
    with pytest.raises(ValueError, match="saved with LoRA"):
        RLLearner(tiny(tokenizer), config).load_state_dict(state)
    with pytest.raises(ValueError, match="do not match"):
        RLLearner(tiny(tokenizer), config, lora=LoRAConfig(rank=4, target_modules=["q_proj"])).load_state_dict(state)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft on transformers 5
def test_merge_lora_rebuilds_the_adapter_models_logits_and_greedy_outputs(tokenizer, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    save_model(tiny(tokenizer), tokenizer, tmp_path / "base")
    learner = RLLearner(load_model(tmp_path / "base"), CONFIG, lora=LoRAConfig(rank=4, alpha=8.0))
    randomize_adapters(learner, seed=5)
    save_adapter(learner.peft, trainable_state(learner.peft), tmp_path / "adapter", tmp_path / "base")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"] == str((tmp_path / "base").resolve())

    # --base defaults to the adapter's base_model_name_or_path; the tokenizer comes from the base.
    assert treadle(["model", "merge-lora", "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "merged")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), local_files_only=True)
    adapter_model = PeftModel.from_pretrained(load_model(tmp_path / "base"), str(tmp_path / "adapter"))
    ids = torch.tensor([[1, 30, 31, 32, 33, 40, 41]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, adapter_model(input_ids=ids).logits, rtol=0, atol=1e-5)

    prompts = random_prompts([4, 7, 11], seed=9, vocab_size=1000)
    # The adapter model unmerged (peft's LoRA layers in transformers generate) against the merged
    # checkpoint in the paged engine, loaded from disk as a user would.
    with_adapter = make_engine("hf", adapter_model.get_base_model(), tokenizer, EngineConfig(backend="hf"))
    paged = make_engine("paged", tmp_path / "merged", tokenizer, EngineConfig(num_kv_blocks=64))
    plain_base = make_engine("paged", tmp_path / "base", tokenizer, EngineConfig(num_kv_blocks=64))
    try:
        expected = [c.token_ids for c in gather(with_adapter, prompts, GREEDY)]
        assert [c.token_ids for c in gather(paged, prompts, GREEDY)] == expected
        assert [c.token_ids for c in gather(plain_base, prompts, GREEDY)] != expected
    finally:
        for engine in (with_adapter, paged, plain_base):
            engine.close()

    assert treadle(["model", "merge-lora", "--adapter", str(tmp_path / "base"), "--out", str(tmp_path / "x")]) == 2
    assert "not a peft adapter (no adapter_config.json)" in capsys.readouterr().err
    for out in (tmp_path, tmp_path / "adapter" / "merged", tmp_path / "base"):  # would replace the adapter or base
        assert treadle(["model", "merge-lora", "--adapter", str(tmp_path / "adapter"), "--out", str(out)]) == 2
        assert f"--out {out}: it is" in capsys.readouterr().err
    assert (tmp_path / "adapter" / "adapter_config.json").is_file() and load_model(tmp_path / "base") is not None


def test_the_lora_config_names_bad_keys():
    assert build(ModelConfig, {}).lora.rank == 0 and not build(ModelConfig, {}).lora.enabled
    lora = build(ModelConfig, {"lora": {"rank": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}}).lora
    assert lora.enabled and lora.target_modules == ["q_proj", "v_proj"]
    with pytest.raises(ConfigError, match=r"lora.target_modules: unknown modules \['wq'\]"):
        build(ModelConfig, {"lora": {"rank": 8, "target_modules": ["q_proj", "wq"]}})
    with pytest.raises(ConfigError, match="lora.rank: must be >= 0"):
        build(ModelConfig, {"lora": {"rank": -1}})


def test_merged_weights_without_adapters_are_empty(tokenizer):
    assert merged_weights(tiny(tokenizer)) == {}  # not a LoRA model: nothing is touched


def test_adapters_start_the_same_in_every_process_from_their_seed(tokenizer):
    torch.manual_seed(1)
    first = RLLearner(tiny(tokenizer), CONFIG, lora=LoRAConfig(rank=4)).state_dict()["model"]
    torch.manual_seed(2)  # another process's RNG: data-parallel ranks must still start equal
    second = RLLearner(tiny(tokenizer), CONFIG, lora=LoRAConfig(rank=4)).state_dict()["model"]
    other_seed = RLLearner(tiny(tokenizer), CONFIG, lora=LoRAConfig(rank=4, init_seed=1)).state_dict()["model"]
    name = "model.layers.0.self_attn.q_proj.lora_A.default.weight"
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert not torch.equal(first[name], other_seed[name])


def test_bench_lora_prints_both_learners_figures_as_json(capsys, keep_torch_threads):
    from benchmarks.lora import main

    assert main(["--json", "--steps", "1", "--episodes", "4", "--tokens", "16", "--rows", "4"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # small preset, rank 8 adapters: r x (in + out) per matrix, q, o 384 x 384; k, v 128 x 384; gate, up,
    # down 1024 x 384 -> 2 x 8 x 768 + 2 x 8 x 512 + 3 x 8 x 1408 = 54,272 per layer; 8 layers; the sync
    # moves exactly them, in fp32.
    assert figures["lora_trainable_params"] == 8 * 54_272 and figures["lora_sync_bytes"] == 8 * 54_272 * 4
    assert figures["full_trainable_params"] * 4 == figures["full_sync_bytes"]  # everything, the tied head once
    assert figures["sync_bytes_ratio"] == round(figures["lora_sync_bytes"] / figures["full_sync_bytes"], 4)
    assert figures["step_time_ratio"] == round(figures["lora_step_s"] / figures["full_step_s"], 3)
