"""The Countdown tokenizer: whole numbers, lossless round trips, single-token markup, offline load."""
from __future__ import annotations

import pytest

from reasoning.countdown.tokenizer import build_tokenizer, save_tokenizer
from rollout.tokenizer import load_tokenizer
from reasoning.markup import MARKUP_TAGS


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(3)


def tokens(tokenizer, text):
    return tokenizer.convert_ids_to_tokens(tokenizer.encode(text))


def test_numbers_up_to_three_digits_are_one_token(tokenizer):
    assert tokens(tokenizer, "12+7=19") == ["12", "+", "7", "=", "19"]
    assert tokens(tokenizer, "29*28=812") == ["29", "*", "28", "=", "812"]


def test_longer_and_non_canonical_numbers_are_spelled_out(tokenizer):
    assert tokens(tokenizer, "21924") == ["2", "1", "9", "2", "4"]
    assert tokens(tokenizer, "007") == ["0", "0", "7"]


def test_two_digit_setting():
    assert tokens(build_tokenizer(2), "99+100") == ["99", "+", "1", "0", "0"]


def test_markup_tags_are_single_tokens_and_survive_decoding(tokenizer):
    text = "".join(MARKUP_TAGS)
    assert tokens(tokenizer, text) == list(MARKUP_TAGS)
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize(
    "text",
    ["24|3 5 7 2\n<answer>(5*3)+(7+2)</answer>", "Goal Goals Node: 1, 2\tx", "  spaces  ", "a+b=c; {}[]~"],
)
def test_printable_text_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_unknown_characters_become_unk(tokenizer):
    assert tokens(tokenizer, "3é") == ["3", "<unk>"]


def test_no_special_tokens_are_added(tokenizer):
    ids = tokenizer.encode("1+2")
    assert tokenizer.bos_token_id not in ids and tokenizer.eos_token_id not in ids


def test_special_ids(tokenizer):
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert len(tokenizer) == len(set(tokenizer.get_vocab().values()))


def test_saves_and_loads_offline_with_autotokenizer(tokenizer, tmp_path, monkeypatch):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_tokenizer(tokenizer, tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert isinstance(loaded, PreTrainedTokenizerFast)
    text = "<spawn><thread>13 8|21924</thread></spawn>"
    assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.decode(loaded.encode(text)) == text
    assert load_tokenizer(tmp_path).eos_token_id == tokenizer.eos_token_id
