"""The wordmath tokenizer: a byte-level BPE trained on generated word problems, with ChatML.

What a user's model ships with, in miniature (Qwen's shape):
- byte-level BPE (the `tokenizers` library) trained on the text of generated problems
  (questions with the math task's instruction, GSM8K solutions, chat answers); any text
  encodes and decodes losslessly, since every byte is in the base alphabet;
- digits split one per token before BPE (as Qwen and Llama 3 do), so numbers are spelled
  digit by digit and arithmetic is learnt digit by digit;
- special tokens: `<|pad|>`, `<|bos|>`, `<|im_start|>` and `<|im_end|>` (the EOS, which
  closes every chat turn, as in Qwen's instruct models);
- the thread markup tags of reasoning/markup.py as ordinary added tokens (one token
  each, not special: controllers decode with skip_special_tokens=True and then parse
  the tags, see learner/thread_tokens.py);
- a ChatML chat template that starts with BOS: `<|bos|><|im_start|>user\\n...<|im_end|>\\n
  <|im_start|>assistant\\n`.
Saved with `save_pretrained`, it loads offline with `AutoTokenizer.from_pretrained(dir)`.
The vocabulary size (`task.wordmath.vocab_size`) was chosen by measured lengths:
`python -m benchmarks.wordmath_tokenizer` (figures in its docstring).
"""
from __future__ import annotations

from typing import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from reasoning.markup import MARKUP_TAGS
from reasoning.wordmath.config import WordMathConfig

PAD, BOS, IM_START, IM_END = "<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, BOS, IM_START, IM_END)
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOKENIZER_SEED = "wordmath-tokenizer"
"""The tokenizer's text is drawn with its own seed (with the setting's), not from the splits."""


def corpus(config: WordMathConfig) -> list[str]:
    """The text the BPE learns from: `tokenizer_problems` generated problems, each as the
    user's prompt, the GSM8K solution and the chat answer, the chat ones after their role's
    name as the template writes it (so `user` and `assistant` become tokens too)."""
    from reasoning.math_task import math_prompt
    from reasoning.wordmath.problems import sample_problems
    from reasoning.wordmath.rows import chat_solution, math_problem, solution

    texts = []
    for problem in sample_problems(config, config.tokenizer_problems, f"{TOKENIZER_SEED}/{config.seed}"):
        prompt = math_prompt(math_problem(problem))
        texts += [f"user\n{prompt}", solution(problem), f"assistant\n{chat_solution(problem)}"]
    return texts


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE of `vocab_size` tokens (specials and the 256 bytes included) trained on
    `texts`, plus the thread tags, as a transformers fast tokenizer with the chat template."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    bpe.train_from_iterator(texts, trainer)
    bpe.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in MARKUP_TAGS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=BOS, eos_token=IM_END, pad_token=PAD,
        additional_special_tokens=[IM_START], clean_up_tokenization_spaces=False, model_max_length=1 << 20,
    )  # fmt: skip
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tokenizer(config: WordMathConfig) -> PreTrainedTokenizerFast:
    """The tokenizer of a fresh wordmath model: trained on `corpus(config)`."""
    return train_tokenizer(corpus(config), config.vocab_size)
