"""The Countdown tokenizer: lossless, small, and one token per number where it pays.

Vocabulary, in id order: the special tokens (<pad> <bos> <eos> <unk>), the thread markup
tags of `reasoning.markup` (one token each, never split), every printable ASCII
character, the whole numbers 10 .. 10**number_digits - 1, and a few trace keywords.

Pre-tokenization splits text into: a keyword, a canonical number of at most
`number_digits` digits that is not part of a longer digit run, a single digit, or a
single character. So `12+7=19` is five tokens, `21924` (too long) is spelled digit by
digit, and `007` is three digits. The decoder concatenates token strings, so decoding an
encoding gives the text back exactly for any printable ASCII text; anything else becomes
<unk>. No BOS or EOS is added by `encode`: callers add them where they belong.

Choice of number_digits (default 3, measured by `python -m benchmarks.tokenizer_lengths`
on the SoS+ traces that SFT trains on; figures in the README): spelling numbers digit by
digit makes traces 37% longer than whole numbers up to 999, on 3- and on 4-number
problems alike; stopping at two digits costs 5% on 3-number and 13% on 4-number
problems, whose intermediate results often pass 99. Three digits give a vocabulary of
1,111 tokens, which even the `tiny` preset's embedding carries easily, and turn each
arithmetic step into a lookup the model can memorise instead of long multiplication
spelled out digit by digit.
"""
from __future__ import annotations

import re
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from reasoning.markup import MARKUP_TAGS

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
PRINTABLE = tuple(chr(c) for c in range(32, 127)) + ("\n", "\t")
KEYWORDS: tuple[str, ...] = ("Goal", "Budget", "Token", "Sub", "Call", "Reached", "Fail", "Node")
"""Words of the trace format that become one token each (longest listed first in the regex)."""


def build_tokenizer(number_digits: int = 3) -> PreTrainedTokenizerFast:
    """The Countdown tokenizer as a transformers fast tokenizer (saveable, AutoTokenizer-loadable)."""
    if not 1 <= number_digits <= 4:
        raise ValueError(f"number_digits must be 1..4, got {number_digits}")
    vocab_list = list(SPECIAL_TOKENS) + list(MARKUP_TAGS) + list(PRINTABLE)
    vocab_list += [str(n) for n in range(10, 10**number_digits)]
    vocab_list += list(KEYWORDS)
    assert len(set(vocab_list)) == len(vocab_list), "duplicate vocabulary entries"
    vocab = {token: i for i, token in enumerate(vocab_list)}

    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(
        Regex(_split_pattern(number_digits)), behavior="isolated"
    )
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.add_tokens(list(MARKUP_TAGS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )


def _split_pattern(number_digits: int) -> str:
    keywords = "|".join(re.escape(k) for k in sorted(KEYWORDS, key=len, reverse=True))
    whole_number = rf"(?<![0-9])(?:0|[1-9][0-9]{{0,{number_digits - 1}}})(?![0-9])"
    return rf"(?:{keywords})(?![A-Za-z])|{whole_number}|[0-9]|[^0-9]"


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> None:
    tokenizer.save_pretrained(str(directory))


