"""The thread markup a model emits to fork and join, shared by traces, tokenizer and runtime.

Every tag is one token of the project's tokenizers, so a controller can stop generation
on a tag id and a protocol can parse the markup without looking inside words.
- APR spawn/join: a parent writes `<spawn>` with one child prompt per `<thread>` and
  `</spawn>`; the runtime runs the children and inserts their results between `<join>`
  and `</join>` (observed, not trained, in the parent).
- Parallel blocks (ThreadWeaver / Multiverse): `<parallel>` holds an outline of goals,
  one `<thread>` each, and `</parallel>` ends it; the runtime runs one branch per goal
  that continues the parent's whole prefix, then joins every goal and body and opens a
  `<conclusion>` (reasoning/protocols/parallel.py).
- `<answer>` wraps the final expression the verifier reads.

A pretrained vocabulary (Qwen, Llama) has none of these tags as a token: `<spawn>` is
several BPE pieces there, and a stop on its id would never fire. `tag_token_ids` checks
a tokenizer before a controller uses it; `treadle model add-thread-tokens` adds the tags
as ordinary (non-special) added tokens, since controllers decode with
`skip_special_tokens=True` and then parse the markup from the text.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SPAWN_OPEN, SPAWN_CLOSE = "<spawn>", "</spawn>"
JOIN_OPEN, JOIN_CLOSE = "<join>", "</join>"
PARALLEL_OPEN, PARALLEL_CLOSE = "<parallel>", "</parallel>"
THREAD_OPEN, THREAD_CLOSE = "<thread>", "</thread>"
CONCLUSION_OPEN, CONCLUSION_CLOSE = "<conclusion>", "</conclusion>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

MARKUP_TAGS: tuple[str, ...] = (
    SPAWN_OPEN, SPAWN_CLOSE,
    JOIN_OPEN, JOIN_CLOSE,
    PARALLEL_OPEN, PARALLEL_CLOSE,
    THREAD_OPEN, THREAD_CLOSE,
    CONCLUSION_OPEN, CONCLUSION_CLOSE,
    ANSWER_OPEN, ANSWER_CLOSE,
)  # fmt: skip

APR_TAGS: tuple[str, ...] = (SPAWN_OPEN, SPAWN_CLOSE, THREAD_OPEN, THREAD_CLOSE, JOIN_OPEN, JOIN_CLOSE)
"""The tags the APR runtime stops on, inserts or parses (reasoning/protocols/apr.py)."""
PARALLEL_TAGS: tuple[str, ...] = (
    PARALLEL_OPEN, PARALLEL_CLOSE, THREAD_OPEN, THREAD_CLOSE, CONCLUSION_OPEN, CONCLUSION_CLOSE,
)  # fmt: skip
"""The tags the parallel-block runtime stops on, inserts or parses (reasoning/protocols/parallel.py)."""

ADD_THREAD_TOKENS = "treadle model add-thread-tokens --model DIR --out DIR"


class MarkupError(ValueError):
    """Malformed thread markup (unbalanced or stray tags, empty or too many threads);
    raised by every protocol's parser in reasoning/protocols/."""


class ThreadTokenError(ValueError):
    """A tokenizer on which some thread tags are not usable single tokens; `problems`
    maps each such tag to what is wrong with it."""

    def __init__(self, problems: dict[str, str]):
        self.problems = dict(problems)
        listed = "; ".join(f"{tag} {problem}" for tag, problem in self.problems.items())
        super().__init__(
            f"the tokenizer lacks thread tags as single tokens: {listed}. "
            f"Run `{ADD_THREAD_TOKENS}` to add them to the model and its tokenizer"
        )


def tag_token_ids(tokenizer: Any, tags: Iterable[str] = MARKUP_TAGS) -> dict[str, int]:
    """{tag: its token id} when every tag is one token of `tokenizer` that survives
    decoding; else a ThreadTokenError naming each tag that is not.

    A tag passes when encoding it alone (no BOS/EOS) gives exactly one id, that id is what
    `convert_tokens_to_ids(tag)` gives (not None, not the unknown token: a SentencePiece
    `▁<spawn>` would be one token but not this one), and it is not a special token
    (`decode(..., skip_special_tokens=True)` would drop it before the markup is parsed).
    """
    special = set(getattr(tokenizer, "all_special_tokens", ()))
    unknown = getattr(tokenizer, "unk_token_id", None)
    ids: dict[str, int] = {}
    problems: dict[str, str] = {}
    for tag in dict.fromkeys(tags):
        encoded = tokenizer.encode(tag, add_special_tokens=False)
        token_id = tokenizer.convert_tokens_to_ids(tag)
        if len(encoded) != 1:
            problems[tag] = f"encodes to {len(encoded)} tokens"
        elif token_id is None or token_id == unknown or encoded[0] != token_id:
            problems[tag] = f"encodes to token {encoded[0]}, which is not the token {tag}"
        elif tag in special:
            problems[tag] = "is a special token, which decoding with skip_special_tokens=True drops"
        else:
            ids[tag] = int(token_id)
    if problems:
        raise ThreadTokenError(problems)
    return ids
