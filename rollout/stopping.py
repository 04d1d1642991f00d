"""When a request is finished: stop tokens, stop strings, max_tokens and the context window.

Plain Python and shared by every backend, so `paged` and `hf` cut a sequence at the same
token. `StopChecker.check` runs after each sampled token, with that token already
appended; the token that triggers a stop is kept in the output.

Precedence when several hold at once: a stop token, then a stop string, then length.

Stop strings are matched on decoded text. Only the tail is decoded (a window a few tokens
longer than the longest stop string, assuming every token decodes to at least one
character), and a string counts only when its match ends inside the text the newest
token added, so a stop string is found at the token that completes it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from rollout.engine import FinishReason, SamplingParams

Decode = Callable[[Sequence[int]], str]


def as_decode(tokenizer: Any) -> Decode | None:
    """A decode function from a tokenizer object (`.decode(ids)`), a callable, or None."""
    if tokenizer is None:
        return None
    decode = getattr(tokenizer, "decode", None)
    if callable(decode):
        return lambda ids: decode(list(ids))
    if callable(tokenizer):
        return tokenizer
    raise TypeError(f"tokenizer must have .decode(ids) or be a callable, got {type(tokenizer).__name__}")


class StopChecker:
    def __init__(
        self,
        sampling: SamplingParams,
        *,
        prompt_len: int,
        eos_token_ids: Sequence[int],
        max_model_len: int,
        decode: Decode | None,
    ):
        assert not sampling.stop or decode is not None, "stop strings need a decode function"
        stop_ids = set(sampling.stop_token_ids)
        if not sampling.ignore_eos:
            stop_ids.update(eos_token_ids)
        self._stop_ids = frozenset(stop_ids)
        self._stops = tuple(s for s in sampling.stop if s)
        self._window = max((len(s) for s in self._stops), default=0) + 2
        self._decode = decode
        # Generating stops at max_tokens or when prompt + output fills the context window.
        self.max_new_tokens = min(sampling.max_tokens, max_model_len - prompt_len)
        assert self.max_new_tokens >= 1, "validate_request guarantees room for one token"

    def check(self, tokens: Sequence[int], num_generated: int) -> FinishReason | None:
        """The reason to finish now that `tokens[-1]` was sampled, or None to go on.

        `tokens` ends with the output so far, whose length is `num_generated` (it may start
        with the prompt, which stop strings never match)."""
        if tokens[-1] in self._stop_ids:
            return FinishReason.STOP_TOKEN
        if self._stops and self._ends_with_stop_string(tokens, num_generated):
            return FinishReason.STOP_SEQUENCE
        if num_generated >= self.max_new_tokens:
            return FinishReason.LENGTH
        return None

    def _ends_with_stop_string(self, tokens: Sequence[int], num_generated: int) -> bool:
        window = list(tokens[-min(self._window, num_generated) :])
        assert self._decode is not None
        text = self._decode(window)
        before = len(self._decode(window[:-1])) if len(window) > 1 else 0
        # A match must end after `before`, i.e. the newest token completed it; earlier
        # matches were seen (and stopped the request) when their own last token arrived.
        return any(text.find(s, max(0, before - len(s) + 1)) >= 0 for s in self._stops)

