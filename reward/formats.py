"""How a verifier finds and checks an answer in model output: the AnswerFormat hook.

A Countdown output may state its answer in more than one way. Each way is an
`AnswerFormat`: `extract` finds the answer span (or says the format does not apply),
`check` scores that span against the problem. `reward.countdown.verify_countdown`
tries an explicit, ordered tuple of formats and lets the first one whose `extract`
returns a span decide the verdict; if none applies the output has no answer. To add a
format (the search-trace format is next), write a class with these three members and
put it in the tuple - `DEFAULT_FORMATS` in reward/countdown.py for everyone, or a
`formats=` argument for one caller. There is no registry and no import-time magic: the
tuple is the whole dispatch, and its order is the priority.

Both methods receive untrusted text and must return rather than raise; `extract` is
called on outputs of up to reward.countdown.MAX_OUTPUT_CHARS characters and must run
in linear time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from reward.verdict import Verdict


class AnswerFormat(Protocol):
    """One way of stating a Countdown answer in model output."""

    @property
    def name(self) -> str:
        """Short identifier used in details and metrics, e.g. "expression"."""
        ...

    def extract(self, output: str) -> str | None:
        """The answer span if this format applies to `output`, else None."""
        ...

    def check(self, answer: str, numbers: Sequence[int], target: int) -> Verdict:
        """Score an extracted span against the given numbers and target."""
        ...


def last_tagged_span(output: str, open_tag: str, close_tag: str) -> str | None:
    """The text inside the last complete `open_tag ... close_tag` pair, or None.

    "Last complete pair" is the last opening tag that some closing tag follows, paired
    with the first closing tag after it, so the span never contains either tag:
    "<a>1</a> <a>2</a>" -> "2", "<a>1<a>2</a>" -> "2", "<a>1</a>2</a>" -> "1".
    Three linear scans (rfind, rfind, find) and no regex, so cost is O(len(output)).
    """
    last_close = output.rfind(close_tag)
    if last_close < 0:
        return None
    start = output.rfind(open_tag, 0, last_close)
    if start < 0:
        return None
    start += len(open_tag)
    end = output.find(close_tag, start, last_close + len(close_tag))
    assert end >= 0, "last_close itself lies in the searched range"
    return output[start:end]
