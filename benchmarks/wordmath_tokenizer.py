"""Sequence lengths of wordmath SFT examples under each BPE vocabulary size.

    python -m benchmarks.wordmath_tokenizer [--config configs/wordmath.yaml] [--problems 1000]

Trains the wordmath tokenizer (reasoning/wordmath/tokenizer.py) at several vocabulary
sizes on the setting's tokenizer text, then tokenizes held-out SFT examples (validation
problems, never in that text) through the chat template, as `treadle sft` does, and
prints per size: mean tokens per whole example, per prompt (through the generation
prompt) and per answer, and the tokenizer's size with the chat and thread tokens. The last
line is one JSON object with every figure.

Chosen: 640 (task.wordmath.vocab_size). Measured on configs/wordmath.yaml, 1000 problems
(tokens of the whole chat example, of the prompt, of the trained answer):

     vocab  example  prompt  answer  len(tokenizer)
       300    274.3   167.7   106.6             312
       384    187.6   101.0    86.6             396
       512    151.7    81.8    69.9             524
       640    135.3    68.6    66.7             652
       768    132.5    66.0    66.5             710
      1024    132.5    66.0    66.5             710

The text runs out of merges at 698 BPE tokens (every word is one token; 768 and 1024
give the same tokenizer). 640 is the smallest size within about 2% of those shortest
sequences (answers, the trained tokens, within 0.3%); 512 makes examples 12% longer and
384 39% longer. Numbers are spelled one digit per token at every size, so the sizes
differ in words only.
"""
from __future__ import annotations

import argparse
import json
import statistics

from configs.experiment import load_config
from reasoning.sft_data import chat_tokens
from reasoning.tasks.prompts import PromptBuilder
from reasoning.wordmath.problems import generate_problems
from reasoning.wordmath.rows import sft_row
from reasoning.wordmath.tokenizer import corpus, train_tokenizer

SIZES = (300, 384, 512, 640, 768, 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/wordmath.yaml")
    parser.add_argument("--problems", type=int, default=1000)
    args = parser.parse_args()
    config = load_config(args.config).task.wordmath
    texts = corpus(config)
    config.num_train, config.num_val = 0, args.problems
    _, problems = generate_problems(config)
    chats = [sft_row(p)["messages"] for p in problems]
    prompts = PromptBuilder("chat")
    figures: dict[str, float] = {}
    print(f"{'vocab':>6} {'example':>8} {'prompt':>7} {'answer':>7} {'len(tokenizer)':>15}")
    for size in SIZES:
        tokenizer = train_tokenizer(texts, size)
        lengths, prompt_lengths = [], []
        for i, chat in enumerate(chats):
            ids, trainable = chat_tokens(f"example {i}", tokenizer, prompts, chat)
            lengths.append(len(ids))
            prompt_lengths.append(trainable.index(True))
        example, prompt = statistics.mean(lengths), statistics.mean(prompt_lengths)
        figures.update({f"example_tokens_{size}": round(example, 1), f"prompt_tokens_{size}": round(prompt, 1),
                        f"len_tokenizer_{size}": len(tokenizer)})  # fmt: skip
        print(f"{size:6d} {example:8.1f} {prompt:7.1f} {example - prompt:7.1f} {len(tokenizer):15d}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
