"""Thread tags must be single, non-special tokens before a controller may use a tokenizer.

A pretrained-style byte-level BPE vocabulary (trained here on a few hundred sentences)
spells `<spawn>` in pieces; the Countdown tokenizer has every tag as one token.
"""
from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from reasoning.controllers.apr import AprController
from reasoning.controllers.limits import ThreadLimits
from reasoning.controllers.parallel import ParallelController
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.markup import MARKUP_TAGS, SPAWN_CLOSE, ThreadTokenError, tag_token_ids
from reasoning.tasks import make_task
from rollout.engine import SamplingParams
from tests.hf_models import bpe_tokenizer

def make(controller_class, tokenizer):
    return controller_class(object(), tokenizer, make_task("countdown"), SamplingParams(max_tokens=16), ThreadLimits())


def test_every_tag_is_one_token_of_the_countdown_tokenizer():
    tokenizer = build_tokenizer()
    ids = tag_token_ids(tokenizer)
    assert list(ids) == list(MARKUP_TAGS)
    assert ids == {tag: tokenizer.convert_tokens_to_ids(tag) for tag in MARKUP_TAGS}
    assert make(AprController, tokenizer).spawn_close_id == ids[SPAWN_CLOSE]


def test_a_bpe_vocabulary_without_the_tags_is_refused_naming_them_and_the_fix():
    tokenizer = bpe_tokenizer()
    assert len(tokenizer.encode("<spawn>", add_special_tokens=False)) > 1
    with pytest.raises(ThreadTokenError) as error:
        tag_token_ids(tokenizer)
    assert set(error.value.problems) == set(MARKUP_TAGS)
    assert "<spawn> encodes to" in str(error.value)
    assert "treadle model add-thread-tokens --model DIR --out DIR" in str(error.value)


@pytest.mark.parametrize("controller_class, first_tag", [(AprController, "<spawn>"), (ParallelController, "<parallel>")])
def test_controllers_refuse_to_start_on_a_tokenizer_without_their_tags(controller_class, first_tag):
    with pytest.raises(ThreadTokenError, match=first_tag):
        make(controller_class, bpe_tokenizer())


def test_a_tag_that_is_the_unknown_token_is_refused():
    # A word-level vocabulary sees `<spawn>` as one word it does not know: one id, but <unk>'s.
    words = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>")
    assert tokenizer.encode("<spawn>", add_special_tokens=False) == [0]
    with pytest.raises(ThreadTokenError, match="<spawn> encodes to token 0, which is not the token <spawn>"):
        tag_token_ids(tokenizer, ["<spawn>"])


def test_tags_added_as_special_tokens_are_refused_because_decoding_drops_them():
    tokenizer = bpe_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": list(MARKUP_TAGS)})
    text = "a<spawn>b"
    assert tokenizer.decode(tokenizer.encode(text), skip_special_tokens=True) == "ab"  # what the controllers would parse
    with pytest.raises(ThreadTokenError, match="<spawn> is a special token"):
        tag_token_ids(tokenizer)
