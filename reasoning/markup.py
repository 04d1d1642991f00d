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
"""

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


class MarkupError(ValueError):
    """Malformed thread markup (unbalanced or stray tags, empty or too many threads);
    raised by every protocol's parser in reasoning/protocols/."""
