"""`treadle model add-thread-tokens` on a pretrained-style checkpoint: a random 2-layer Llama
with a byte-level BPE tokenizer trained in the test, saved in Hugging Face format.

Before: the controllers refuse its tokenizer. After: every tag is one token that survives
encode -> decode(skip_special_tokens=True), the new embedding (and untied head) rows are
the mean of the old rows, the old rows are unchanged, a tied head is still tied, the
controllers start and the spawn stop fires; a second run adds nothing.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from learner.thread_tokens import TokenAdditionError, add_thread_tokens, add_tokens
from reasoning.controllers.apr import AprController
from reasoning.controllers.limits import ThreadLimits
from reasoning.controllers.parallel import ParallelController
from reasoning.markup import MARKUP_TAGS, SPAWN_CLOSE, ThreadTokenError, tag_token_ids
from reasoning.tasks import make_task
from rollout.engine import FinishReason, SamplingParams
from tests.hf_models import bpe_tokenizer
from tests.scripted_engine import ScriptedEngine

REPO = Path(__file__).resolve().parents[2]
TEXT = "we try<spawn><thread>add 12 + 7</thread></spawn><join>19</join><answer>12+7</answer>"


def save_checkpoint(directory: Path, tie: bool, extra_rows: int = 0) -> Path:
    """A random Llama (2 layers, hidden 64) sized to the BPE tokenizer (+ `extra_rows` padding rows)."""
    tokenizer = bpe_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer) + extra_rows, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=tie,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def load(directory: Path):
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    return tokenizer, AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True)


def make(controller_class, tokenizer, engine=None, sampling=SamplingParams(max_tokens=64, temperature=0.0)):
    return controller_class(engine or object(), tokenizer, make_task("countdown"), sampling, ThreadLimits())


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_added_tags_are_single_tokens_with_mean_rows_and_the_controllers_start(tmp_path, tie):
    source = save_checkpoint(tmp_path / "base", tie)
    old_tokenizer, old_model = load(source)
    num_old = len(old_tokenizer)
    with pytest.raises(ThreadTokenError, match="<spawn>"):
        make(AprController, old_tokenizer)

    result = add_thread_tokens(source, tmp_path / "out", MARKUP_TAGS)
    assert list(result.added) == list(MARKUP_TAGS) and result.present == {}
    assert (result.rows_before, result.rows_after) == (num_old, 448)  # 405 + 12 tags, padded to a multiple of 64
    assert (tmp_path / "out" / "model.safetensors").is_file()

    tokenizer, model = load(tmp_path / "out")
    ids = tag_token_ids(tokenizer)
    assert ids == result.added and sorted(ids.values()) == list(range(num_old, num_old + len(MARKUP_TAGS)))
    assert tokenizer.decode(tokenizer.encode(TEXT, add_special_tokens=False), skip_special_tokens=True) == TEXT
    assert model.config.vocab_size == 448
    heads = [("embedding", lambda m: m.model.embed_tokens.weight)]
    if tie:
        assert model.lm_head.weight is model.model.embed_tokens.weight
    else:
        heads.append(("head", lambda m: m.lm_head.weight))
    for name, weight in heads:
        old, new = weight(old_model), weight(model)
        assert torch.equal(new[:num_old], old), f"{name}: an old row changed"
        expected = old.mean(0).expand(448 - num_old, -1)
        torch.testing.assert_close(new[num_old:], expected, rtol=0, atol=1e-7, msg=f"{name}: new rows are not the mean")
    model(input_ids=torch.tensor([tokenizer.encode(TEXT)]))  # the new ids index real rows

    apr, parallel = make(AprController, tokenizer), make(ParallelController, tokenizer)
    assert apr.spawn_close_id == ids[SPAWN_CLOSE] and ids[SPAWN_CLOSE] in apr.sampling.stop_token_ids
    assert parallel.parallel_close_id == ids["</parallel>"]

    again = add_thread_tokens(tmp_path / "out", tmp_path / "again", MARKUP_TAGS)
    assert again.added == {} and again.present == ids and again.rows_after == again.rows_before == 448
    _, model_again = load(tmp_path / "again")
    assert all(torch.equal(a, b) for a, b in zip(model_again.state_dict().values(), model.state_dict().values()))


def test_the_spawn_stop_fires_on_the_extended_tokenizer(tmp_path):
    add_thread_tokens(save_checkpoint(tmp_path / "base", tie=True), tmp_path / "out", MARKUP_TAGS)
    tokenizer, _ = load(tmp_path / "out")
    engine = ScriptedEngine(tokenizer, lambda context: "we try<spawn><thread>add 12</thread></spawn> and more")
    apr = make(AprController, tokenizer, engine)
    completion = asyncio.run(engine.generate(tokenizer.encode("the cat"), apr.sampling))
    assert completion.finish_reason is FinishReason.STOP_TOKEN
    assert tokenizer.decode(completion.token_ids, skip_special_tokens=True) == "we try<spawn><thread>add 12</thread></spawn>"


def test_new_ids_that_fit_in_existing_padding_rows_need_no_resize(tmp_path):
    # Like Qwen: the checkpoint has 30 rows past the tokenizer; the 12 tags take the first 12.
    source = save_checkpoint(tmp_path / "base", tie=False, extra_rows=30)
    old_tokenizer, old_model = load(source)
    num_old = len(old_tokenizer)
    result = add_thread_tokens(source, tmp_path / "out", MARKUP_TAGS)
    assert result.rows_before == result.rows_after == num_old + 30
    _, model = load(tmp_path / "out")
    for old, new in [(old_model.model.embed_tokens.weight, model.model.embed_tokens.weight),
                     (old_model.lm_head.weight, model.lm_head.weight)]:  # fmt: skip
        assert torch.equal(new[:num_old], old[:num_old]) and torch.equal(new[num_old + 12 :], old[num_old + 12 :])
        torch.testing.assert_close(new[num_old : num_old + 12], old[:num_old].mean(0).expand(12, -1), rtol=0, atol=1e-7)


def test_a_tag_that_is_already_a_special_token_is_refused(tmp_path):
    tokenizer, model = load(save_checkpoint(tmp_path / "base", tie=True))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<spawn>"]})
    with pytest.raises(TokenAdditionError, match="<spawn>: already special tokens"):
        add_tokens(model, tokenizer, MARKUP_TAGS)


def treadle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actors.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_command_adds_the_tags_once(tmp_path):
    usage = treadle("model", "add-thread-tokens", "--help")
    assert usage.returncode == 0 and "usage: treadle model add-thread-tokens" in usage.stdout
    source = save_checkpoint(tmp_path / "base", tie=True)
    first = treadle("model", "add-thread-tokens", "--model", str(source), "--out", str(tmp_path / "out"))
    assert first.returncode == 0, first.stderr
    assert "added 12 thread tokens: <spawn>=405" in first.stdout and "embedding rows 405 -> 448" in first.stdout
    second = treadle("model", "add-thread-tokens", "--model", str(tmp_path / "out"), "--out", str(tmp_path / "again"))
    assert second.returncode == 0, second.stderr
    assert "nothing to add: all 12 thread tags are single tokens already" in second.stdout
    in_place = treadle("model", "add-thread-tokens", "--model", str(source), "--out", str(source))
    assert in_place.returncode == 2 and "another directory" in in_place.stderr
    missing = treadle("model", "add-thread-tokens", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"))
    assert missing.returncode == 2 and "not a model checkpoint (no config.json)" in missing.stderr
