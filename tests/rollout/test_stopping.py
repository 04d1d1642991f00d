"""Stop rules and request validation, shared by every backend; plain Python, no model.

Decode here is a toy tokenizer: token id t decodes to VOCAB[t], so multi-character
tokens and stop strings that straddle token boundaries can be written out by hand.
"""
from __future__ import annotations

import pytest

from rollout.engine import FinishReason, SamplingParams
from rollout.errors import InvalidRequest
from rollout.requests import Request, make_request, validate_request
from rollout.stopping import StopChecker

VOCAB = ["<pad>", "<bos>", "<eos>", "a", "b", "</", "answer", ">", "x</answer>y", "\n"]
EOS = 2


def decode(ids):
    return "".join(VOCAB[i] for i in ids)


def run(sampling: SamplingParams, outputs: list[int], prompt_len: int = 3, max_model_len: int = 100):
    """Feed `outputs` one by one; return (tokens kept, reason) at the first stop."""
    checker = StopChecker(sampling, prompt_len=prompt_len, eos_token_ids=(EOS,), max_model_len=max_model_len, decode=decode)
    prompt = [1] * prompt_len
    for n in range(1, len(outputs) + 1):
        reason = checker.check(prompt + outputs[:n], n)
        if reason is not None:
            return outputs[:n], reason
    return outputs, None


def test_eos_stops_and_is_kept_unless_ignored():
    assert run(SamplingParams(), [3, 4, EOS, 3]) == ([3, 4, EOS], FinishReason.STOP_TOKEN)
    assert run(SamplingParams(max_tokens=4, ignore_eos=True), [3, EOS, 3, 4, 3]) == ([3, EOS, 3, 4], FinishReason.LENGTH)


def test_extra_stop_token_ids():
    assert run(SamplingParams(stop_token_ids=(4,)), [3, 3, 4, 3]) == ([3, 3, 4], FinishReason.STOP_TOKEN)
    # ignore_eos drops only EOS, not the request's own stop ids.
    assert run(SamplingParams(stop_token_ids=(4,), ignore_eos=True), [EOS, 4]) == ([EOS, 4], FinishReason.STOP_TOKEN)


def test_stop_string_across_tokens_stops_at_the_completing_token():
    # "</" + "answer" + ">" completes "</answer>" at the third of those tokens.
    assert run(SamplingParams(stop=("</answer>",)), [3, 5, 6, 7, 3]) == ([3, 5, 6, 7], FinishReason.STOP_SEQUENCE)


def test_stop_string_inside_one_token():
    assert run(SamplingParams(stop=("</answer>",)), [3, 8, 3]) == ([3, 8], FinishReason.STOP_SEQUENCE)


def test_stop_string_in_the_prompt_does_not_count():
    checker = StopChecker(SamplingParams(stop=(">",)), prompt_len=2, eos_token_ids=(EOS,), max_model_len=100, decode=decode)
    assert checker.check([7, 7, 3], 1) is None  # the prompt ends with ">", the output is "a"


def test_stop_token_wins_over_length():
    assert run(SamplingParams(max_tokens=2), [3, EOS]) == ([3, EOS], FinishReason.STOP_TOKEN)


def test_context_window_caps_the_output():
    # 3 prompt tokens in a window of 6 leave room for 3 outputs.
    assert run(SamplingParams(max_tokens=50), [3, 3, 3, 3], prompt_len=3, max_model_len=6) == ([3, 3, 3], FinishReason.LENGTH)


def validate(prompt, stop=(), vocab_size=10, max_model_len=8, can_decode_text=True):
    request = Request("r1", prompt, SamplingParams(stop=stop))
    validate_request(request, vocab_size=vocab_size, max_model_len=max_model_len, can_decode_text=can_decode_text)


def test_valid_request_passes():
    validate([1, 2, 9])
    validate([1] * 7)  # 7 tokens in a window of 8 leaves one for output


@pytest.mark.parametrize(
    "prompt, kwargs, message",
    [
        ([], {}, "empty prompt"),
        ([1, 10, 3, -1], {}, r"token id 10 at prompt position 1 is outside the vocabulary \[0, 10\) \(2 such ids\)"),
        ([1] * 8, {}, "prompt of 8 tokens leaves no room in the context window of 8 tokens"),
        ([1], {"stop": ("x",), "can_decode_text": False}, "stop strings need a tokenizer"),
    ],
)
def test_bad_requests_name_the_problem(prompt, kwargs, message):
    with pytest.raises(InvalidRequest, match=message) as error:
        validate(prompt, **kwargs)
    assert "request 'r1'" in str(error.value)


def test_prompt_elements_must_be_integers():
    import numpy as np

    assert make_request("r", np.array([1, 2], dtype=np.int64), SamplingParams()).prompt_ids == [1, 2]
    with pytest.raises(InvalidRequest, match=r"prompt element 1 is 2.5 \(float\)"):
        make_request("r", [1, 2.5], SamplingParams())
