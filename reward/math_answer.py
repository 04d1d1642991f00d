"""Math answer verification (GSM8K, MATH-500 style) with math-verify, in bounded time.

`verify_math(gold, output)` and `MathVerifier.verify` are total: for any output text
they return a Verdict and never raise. The steps:

1. An output longer than MAX_OUTPUT_CHARS is TOO_LONG, not scanned.
2. The model's answer is the last `<answer>...</answer>` span (its last `\\boxed{}`
   if it holds one, else the whole span), else the last complete `\\boxed{...}` in the
   output, else the last TAIL_CHARS characters, which math-verify searches for an
   answer in prose ("the final answer is 72"). An empty span is NO_ANSWER, a span
   longer than MAX_ANSWER_CHARS is TOO_LONG. These scans are linear and run here.
3. The gold answer is the text after the last "####" (GSM8K's form), else the last
   `\\boxed{}` in it (a MATH solution), else the whole string.
4. math-verify parses gold and answer (spans as `\\boxed{span}`, so bare LaTeX such as
   `\\frac{\\pi}{2}` parses) and compares them: equal numerically or symbolically is
   CORRECT (0.5 = \\frac{1}{2}, 3 = 3.0, (1, 2) = (1,2)), otherwise WRONG_VALUE; an
   answer it cannot parse is NO_ANSWER, a gold it cannot parse is BAD_RECORD.

Step 4 runs in a separate worker process (reward.worker, a fresh interpreter): sympy
can hang or grind for minutes on hostile input such as `9^{9^{9^{9}}}`, and math-verify's
own timeouts use signal.alarm, which works only in a main thread and cannot interrupt
a long C call. The parent waits at most `timeout_s` for the reply; on expiry it kills
the worker, starts a fresh one (half a second of imports, not counted against any
answer's time) and returns TIMEOUT. The worker also runs under an address-space limit.

Not covered: multiple-choice letters, answers with units compared as units (a `\\text`
unit becomes sympy symbols), and partial credit.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading

from reward.formats import last_tagged_span
from reward.verdict import Reason, Verdict
from reward.worker import BoundedWorker, WorkerStartError

MAX_OUTPUT_CHARS = 131_072
"""Longer outputs are TOO_LONG unscanned (about 32k tokens of reasoning)."""
MAX_ANSWER_CHARS = 1_000
"""An extracted answer (or gold answer) longer than this is not given to math-verify."""
TAIL_CHARS = 1_000
"""Without a tagged or boxed answer, math-verify searches only this many final characters."""
DEFAULT_TIMEOUT_S = 5.0
"""Wall time allowed for parsing and comparing one answer in the worker."""
STARTUP_TIMEOUT_S = 120.0
"""Wall time allowed for a worker to import sympy and math-verify before it is an error."""
DEFAULT_MEMORY_LIMIT_BYTES = 2 << 30
"""Address-space limit of the worker process (RLIMIT_AS); None in MathVerifier disables it."""
GSM8K_MARKER = "####"

_ANSWER_TAGS = ("<answer>", "</answer>")
_BOXED = "\\boxed{"
_UNESCAPED_BRACE = re.compile(r"(?<!\\)[{}]")
# The worker caps its own CPU time per answer at the wall timeout plus this slack, so a
# worker orphaned while stuck (its parent killed) still dies; single-threaded, its CPU
# time never exceeds wall time, so the cap never fires before the parent's timeout.
_CPU_SLACK_S = 2.0

VerifierStartError = WorkerStartError
"""The worker process could not start (an environment fault, not a model output)."""


def last_boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` in `text` if its braces close, else None.

    Escaped braces (`\\{`) are not counted, so `\\boxed{\\{1, 2\\}}` -> `\\{1, 2\\}`.
    One rfind and one forward scan from there: O(len(text)).
    """
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    start += len(_BOXED)
    depth = 1
    for match in _UNESCAPED_BRACE.finditer(text, start):
        depth += 1 if match.group() == "{" else -1
        if depth == 0:
            return text[start : match.start()]
    return None


def gold_answer(gold: str) -> str:
    """The final answer inside a gold string: "...#### 72" -> "72", a boxed one, or all."""
    marker = gold.rfind(GSM8K_MARKER)
    if marker >= 0:
        return gold[marker + len(GSM8K_MARKER) :].strip()
    boxed = last_boxed(gold)
    return (boxed if boxed is not None else gold).strip()


def extract_answer(output: str) -> tuple[str, str]:
    """(answer text, where it was found): "answer tag", "boxed" or "tail".

    "tail" text is prose for math-verify to search; the others are bare answers.
    """
    tagged = last_tagged_span(output, *_ANSWER_TAGS)
    if tagged is not None:
        inner = last_boxed(tagged)
        return (inner if inner is not None else tagged).strip(), "answer tag"
    boxed = last_boxed(output)
    if boxed is not None:
        return boxed.strip(), "boxed"
    return output[-TAIL_CHARS:], "tail"


class MathVerifier:
    """Scores outputs against gold answers in one reusable worker process.

    Start-up is asynchronous (the constructor launches the worker, the first `verify`
    waits for it). Calls from several threads are serialised. Use as a context manager
    or call `close()`; `num_restarts` counts workers replaced after a timeout or crash.
    """

    def __init__(
        self,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT_BYTES,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        self._worker = BoundedWorker(
            "reward.math_answer:_math_handler",
            name="math-verify",
            memory_limit_bytes=memory_limit_bytes,
            startup_timeout_s=STARTUP_TIMEOUT_S,
        )

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current worker (changes when it is replaced)."""
        return self._worker.worker_pid

    @property
    def num_restarts(self) -> int:
        """Workers replaced after a timeout or crash."""
        return self._worker.num_restarts

    def verify(self, gold: str, output: str, timeout_s: float | None = None) -> Verdict:
        """Score `output` against `gold`; `timeout_s` overrides the constructor's limit."""
        if len(output) > MAX_OUTPUT_CHARS:
            return Verdict.fail(
                Reason.TOO_LONG, f"output has {len(output)} characters, limit {MAX_OUTPUT_CHARS}"
            )
        gold_text = gold_answer(gold)
        if not gold_text or len(gold_text) > MAX_ANSWER_CHARS:
            return Verdict.fail(Reason.BAD_RECORD, f"gold answer has {len(gold_text)} characters")
        answer, source = extract_answer(output)
        if not answer.strip():
            return Verdict.fail(Reason.NO_ANSWER, f"empty answer ({source})")
        if len(answer) > MAX_ANSWER_CHARS:
            return Verdict.fail(
                Reason.TOO_LONG, f"answer ({source}) has {len(answer)} characters, limit {MAX_ANSWER_CHARS}"
            )
        limit = self.timeout_s if timeout_s is None else timeout_s
        if not limit > 0:
            raise ValueError(f"timeout_s must be positive, got {limit!r}")
        reply = self._worker.ask((gold_text, answer, source != "tail"), limit, limit + _CPU_SLACK_S)
        if reply.status == "ok":
            status, extracted = reply.value
        else:
            status, extracted = reply.status, "" if reply.status == "timeout" else f"exit code {reply.value}"
        return _verdict(status, extracted, gold_text, answer, source, limit)

    def close(self) -> None:
        """Stop the worker; idempotent. Later `verify` calls raise RuntimeError."""
        self._worker.close()

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _verdict(status: str, extracted: str, gold: str, answer: str, source: str, timeout_s: float) -> Verdict:
    # For a bare span show the model's own text; math-verify's match is normalised (0.5 -> \\frac{1}{2}).
    shown = f"{(extracted if source == 'tail' else '') or answer[:60]!r} ({source})"
    if status == "correct":
        return Verdict.correct(f"{shown} equals {gold!r}")
    if status == "wrong":
        return Verdict.fail(Reason.WRONG_VALUE, f"{shown} differs from {gold!r}")
    if status == "no_answer":
        return Verdict.fail(Reason.NO_ANSWER, f"math-verify found no expression in {shown}")
    if status == "bad_gold":
        return Verdict.fail(Reason.BAD_RECORD, f"math-verify cannot parse gold {gold!r}")
    if status == "timeout":
        return Verdict.fail(Reason.TIMEOUT, f"checking {shown} took over {timeout_s} s; worker restarted")
    assert status in ("crash", "error"), status
    return Verdict.fail(Reason.BAD_SYNTAX, f"verifier {status} ({extracted}) on {answer[:60]!r}")


def _math_handler():
    """Worker setup (reward.worker): import math-verify; answer (gold, answer, is_bare) requests."""
    # Timeouts are the parent's job, so math-verify's are off; silence its warning about that.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import parse, verify

    def answer(request: tuple[str, str, bool]) -> tuple[str, str]:
        try:
            return _check(parse, verify, *request)
        except (MemoryError, RecursionError) as e:  # hostile input exhausting the worker
            return "error", type(e).__name__

    return answer


def _check(parse, verify, gold: str, answer: str, is_bare: bool) -> tuple[str, str]:
    parsed_gold = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
    if not parsed_gold:
        return "bad_gold", ""
    parsed = parse(f"\\boxed{{{answer}}}" if is_bare else answer, parsing_timeout=None)
    if not parsed:
        return "no_answer", ""
    # parse() gives [sympy value, matched text]; never str() the sympy value (it can hang).
    extracted = next((p for p in parsed if isinstance(p, str)), "")[:60]
    equal = verify(parsed_gold, parsed, timeout_seconds=None)
    return ("correct" if equal else "wrong"), extracted


_shared: MathVerifier | None = None
_shared_lock = threading.Lock()


def verify_math(gold: str, output: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Score `output` against `gold` with a process-wide MathVerifier (closed at exit).

    >>> verify_math("#### 72", "so she has \\\\boxed{72} apples").reason
    <Reason.CORRECT: 'correct'>
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MathVerifier(timeout_s)
            atexit.register(_shared.close)
        verifier = _shared
    return verifier.verify(gold, output, timeout_s)
