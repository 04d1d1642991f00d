"""Verifiers and reward shaping. Pure Python: imports neither torch nor ray.

Covered so far: the Countdown verifier (`verify_countdown`) for the
`<answer>EXPRESSION</answer>` format, with a hook (reward.formats.AnswerFormat) for
further answer formats, and strict validation of JSONL records (reward.record). Math
answers (reward.math_answer) and a user's reward function by import path
(reward.custom_reward) run in a time-bounded worker process (reward.worker).
Not yet covered: the search-trace answer format and reward shaping beyond 1.0 / 0.0.
"""

from reward.countdown import verify_countdown
from reward.verdict import Reason, Verdict

__all__ = ["Reason", "Verdict", "verify_countdown"]
