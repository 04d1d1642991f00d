"""The wordmath tokenizer: lossless byte-level round trips, one digit per token, thread tags as
single ordinary tokens, BOS/EOS/PAD and ChatML specials, the chat template, offline load,
determinism; and SFT examples train exactly the assistant's answer through `<|im_end|>`."""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from reasoning.markup import MARKUP_TAGS, tag_token_ids
from reasoning.sft_data import chat_tokens
from reasoning.tasks.prompts import PromptBuilder
from reasoning.wordmath.config import WordMathConfig
from reasoning.wordmath.problems import generate_problems
from reasoning.wordmath.rows import sft_row
from reasoning.wordmath.tokenizer import BOS, IM_END, IM_START, PAD, build_tokenizer

SETTING = WordMathConfig(tokenizer_problems=300, num_train=0, num_val=20, seed=1)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(SETTING)


@pytest.mark.parametrize(
    "text",
    [
        "Ana has 4 * 12 = 48 marbles.\nThe answer is \\boxed{48}.",
        "  two  spaces, tabs\t and a trailing newline\n",
        "Ünïcödé, 中文 and an emoji 😀 survive as bytes",
        "<spawn><thread>Ana has 3 eggs.</thread></spawn><join>9</join> <answer>12</answer>",
        "000123 0.5 -7 1e9",
        "",
    ],
)
def test_round_trip(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(ids, skip_special_tokens=True) == text  # the tags are not special


def test_digits_are_one_token_each(tokenizer):
    for number in ("7", "48", "305", "123456789", "1000"):
        ids = tokenizer.encode(f"x {number} y", add_special_tokens=False)
        tokens = tokenizer.convert_ids_to_tokens(ids)
        assert [t for t in tokens if any(c.isdigit() for c in t)] == list(number)


def test_thread_tags_are_single_ordinary_tokens(tokenizer):
    ids = tag_token_ids(tokenizer)  # the controllers' own check: one token, not special
    assert set(ids) == set(MARKUP_TAGS) and len(set(ids.values())) == len(MARKUP_TAGS)
    assert not set(MARKUP_TAGS) & set(tokenizer.all_special_tokens)


def test_special_tokens(tokenizer):
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (BOS, IM_END, PAD)
    assert {BOS, IM_END, PAD, IM_START} <= set(tokenizer.all_special_tokens)
    for token in (BOS, IM_END, PAD, IM_START):
        assert tokenizer.encode(token, add_special_tokens=False) == [tokenizer.convert_tokens_to_ids(token)]
    assert tokenizer.encode("Ana has 3.") == tokenizer.encode("Ana has 3.", add_special_tokens=False)  # no BOS added
    assert len(tokenizer) == SETTING.vocab_size + len(MARKUP_TAGS)


def test_chat_template_and_offline_load(tokenizer, tmp_path):
    chat = [{"role": "user", "content": "Ana has 3 eggs."}, {"role": "assistant", "content": "\\boxed{3}"}]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    assert text == "<|bos|><|im_start|>user\nAna has 3 eggs.<|im_end|>\n<|im_start|>assistant\n\\boxed{3}<|im_end|>\n"
    prompt = tokenizer.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|bos|><|im_start|>user\nAna has 3 eggs.<|im_end|>\n<|im_start|>assistant\n"
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert loaded.apply_chat_template(chat, tokenize=False) == text
    sample = "Ana has 12 * 3 = 36 eggs. <parallel>"
    assert loaded.encode(sample, add_special_tokens=False) == tokenizer.encode(sample, add_special_tokens=False)
    assert loaded.eos_token == IM_END and tag_token_ids(loaded) == tag_token_ids(tokenizer)


def test_the_same_setting_gives_the_same_tokenizer(tokenizer):
    again = build_tokenizer(SETTING)
    assert again.get_vocab() == tokenizer.get_vocab()
    other = build_tokenizer(WordMathConfig(tokenizer_problems=300, vocab_size=400))
    assert len(other) == 400 + len(MARKUP_TAGS)


def test_sft_examples_train_exactly_the_answer_and_end_of_turn(tokenizer):
    _, problems = generate_problems(SETTING)
    for i, problem in enumerate(problems):
        row = sft_row(problem)
        ids, trainable = chat_tokens(f"row {i}", tokenizer, PromptBuilder("chat"), row["messages"])
        trained = [t for t, flag in zip(ids, trainable) if flag]
        assert trained[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(trained[:-1]) == row["messages"][1]["content"]
        # The untrained prefix is exactly the prompt the math task gives the model.
        prompt = ids[: trainable.index(True)]
        assert prompt == PromptBuilder("chat").text_ids(tokenizer, row["messages"][0]["content"] + "\n")
