"""The result of checking one model output: a reward and the reason for it.

Every verifier in this package returns a `Verdict` instead of raising, so a rollout
worker can score any text the model produced and count failures by `Reason` in its
metrics. The set of reasons is fixed (it is written to JSONL by `treadle verify` and
aggregated in dashboards); add a member only together with the code that emits it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Details are meant for logs and eyeballing, so they are kept short and can never echo
# a huge model output back into a log line.
MAX_DETAIL_CHARS = 200


class Reason(str, enum.Enum):
    """Why an output got its reward. The string values are the on-disk form."""

    CORRECT = "correct"
    NO_ANSWER = "no_answer"  # no answer span that any answer format recognises
    BAD_SYNTAX = "bad_syntax"  # an answer was found but does not parse
    WRONG_NUMBERS = "wrong_numbers"  # numbers used differ from the given multiset
    WRONG_VALUE = "wrong_value"  # well-formed, right numbers, wrong result
    DIVISION_BY_ZERO = "division_by_zero"
    BAD_STEP = "bad_step"  # a line of a solution path is wrong arithmetic or a wrong state
    TOO_LONG = "too_long"  # output or answer exceeds a size limit; not scanned
    BAD_RECORD = "bad_record"  # the problem record (numbers/target) is malformed
    TIMEOUT = "timeout"  # checking the answer took longer than the verifier's time limit
    SCORED = "scored"  # a user's reward function gave a reward below its task's "correct" mark
    REWARD_ERROR = "reward_error"  # a user's reward function raised or returned no finite number

    def __str__(self) -> str:
        return self.value


def clip_detail(text: str) -> str:
    """Shorten `text` to at most MAX_DETAIL_CHARS characters, marking the cut."""
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    return text[: MAX_DETAIL_CHARS - 3] + "..."


@dataclass(frozen=True)
class Verdict:
    """A reward with its reason and a short human-readable explanation.

    `reward` is 1.0 for a correct answer and 0.0 for every failure; a user's reward
    function (reward.custom_reward) gives any finite float, reason CORRECT at or above
    its task's mark and SCORED below it (partial or negative credit).
    `detail` is at most MAX_DETAIL_CHARS characters (enforced by the constructors
    below) and says what was wrong, e.g. "evaluates to 17/3, target 24".
    """

    reward: float
    reason: Reason
    detail: str = ""

    @classmethod
    def correct(cls, detail: str = "") -> Verdict:
        """Full reward."""
        return cls(reward=1.0, reason=Reason.CORRECT, detail=clip_detail(detail))

    @classmethod
    def fail(cls, reason: Reason, detail: str = "") -> Verdict:
        """Zero reward for `reason`, which must not be CORRECT."""
        assert reason is not Reason.CORRECT, "a failure needs a failure reason"
        return cls(reward=0.0, reason=reason, detail=clip_detail(detail))

    @property
    def is_correct(self) -> bool:
        return self.reason is Reason.CORRECT
