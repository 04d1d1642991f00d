"""What an engine core is asked to do, and the checks every backend applies on admission.

Plain Python, no torch: `validate_request` is the single place that decides which
requests are served and which end at once with `FinishReason.ERROR`, so the `paged` and
`hf` backends reject exactly the same inputs with the same messages.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Sequence

from rollout.engine import SamplingParams
from rollout.errors import InvalidRequest


@dataclass
class Request:
    request_id: str
    prompt_ids: list[int]
    sampling: SamplingParams


def make_request(request_id: str, prompt_ids: Sequence[int], sampling: SamplingParams) -> Request:
    """A Request with the prompt copied into a list of Python ints.

    Raises InvalidRequest when an element is not an integer (a float or a string sneaking in
    from a caller's bookkeeping), before any other check can misread it."""
    ids: list[int] = []
    for position, token in enumerate(prompt_ids):
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            raise InvalidRequest(
                f"request {request_id!r}: prompt element {position} is {token!r} ({type(token).__name__}), not a token id"
            )
        ids.append(int(token))
    return Request(request_id, ids, sampling)


def validate_request(
    request: Request, *, vocab_size: int, max_model_len: int, can_decode_text: bool
) -> None:
    """Raise InvalidRequest (naming the request and the limit) unless it can be served.

    A prompt must leave room for at least one generated token: `len(prompt) < max_model_len`.
    """
    prefix = f"request {request.request_id!r}"
    prompt = request.prompt_ids
    if not prompt:
        raise InvalidRequest(f"{prefix}: empty prompt (give at least one token, e.g. BOS)")
    bad = [(i, t) for i, t in enumerate(prompt) if not 0 <= t < vocab_size]
    if bad:
        position, token = bad[0]
        raise InvalidRequest(
            f"{prefix}: token id {token} at prompt position {position} is outside the vocabulary "
            f"[0, {vocab_size}) ({len(bad)} such ids)"
        )
    if len(prompt) >= max_model_len:
        raise InvalidRequest(
            f"{prefix}: prompt of {len(prompt)} tokens leaves no room in the context window of "
            f"{max_model_len} tokens"
        )
    if request.sampling.stop and not can_decode_text:
        raise InvalidRequest(f"{prefix}: stop strings need a tokenizer; the engine was built without one")
