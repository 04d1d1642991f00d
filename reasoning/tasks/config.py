"""Settings of the task: where problems come from, how a prompt is built, how outputs are scored."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, one_of, require
from reasoning.countdown.config import CountdownConfig
from reasoning.wordmath.config import WordMathConfig

TASK_NAMES = ("countdown", "math", "custom", "wordmath")


@dataclass
class TaskConfig:
    """One task for every stage (eval, SFT, rollouts, the learner's grouping).

    `countdown` generates its problems from `countdown` when no file is given; `math`
    reads GSM8K / MATH-500-style files and scores with math-verify; `custom` reads any
    data file with a `prompt` (or chat `messages`) column and scores with the user's
    function `reward`.
    """

    name: str = field(default="countdown", metadata=one_of(*TASK_NAMES))
    """countdown (APR's arithmetic game), math (GSM8K / MATH-500 files, math-verify), or
    custom (a data file plus a reward function named by import path), or wordmath (the
    math task on generated word problems, reasoning/tasks/wordmath.py)."""
    train_file: str = ""
    """Problems `treadle train` samples from (.parquet or .jsonl); empty: countdown
    generates its own, the other tasks need one."""
    eval_file: str = ""
    """Held-out problems of `treadle train`'s evaluations (train keeps none of their keys);
    empty: a generator task's (countdown, wordmath) own validation split; math and custom
    then have none, and train.eval_every must be 0."""
    prompt_format: str = field(default="raw", metadata=one_of("raw", "chat", "auto"))
    """raw: the problem text after the tokenizer's BOS (if it has one); chat: the
    tokenizer's chat template with the problem as the user's message and the
    generation prompt appended (a `messages` column always takes the chat template);
    auto: chat when the tokenizer has a chat template, else raw."""
    system_prompt: str = ""
    """With chat prompts: a system message put first (empty: none)."""
    reward: str = ""
    """custom: the reward function as "package.module:function", called with the problem
    row (a dict of the file's columns) and the output text; returns a float or
    (float, reason). It runs in a worker process, bounded by reward_timeout_s."""
    reward_timeout_s: float = field(default=5.0, metadata=bounds(gt=0.0, le=3600.0))
    """Longest one scoring may take (custom reward, math-verify); past it the output
    scores 0 with reason `timeout` and the worker process is restarted."""
    correct_at: float = field(default=1.0, metadata=bounds(ge=-1e9, le=1e9))
    """custom: a reward at or above this counts as correct in accuracy figures."""
    countdown: CountdownConfig = field(default_factory=CountdownConfig)
    """countdown: how problems are generated (`treadle data countdown`, and `treadle train`
    without task files)."""
    wordmath: WordMathConfig = field(default_factory=WordMathConfig)
    """wordmath: how word problems are generated (`treadle data wordmath`, `treadle train`
    without task files, `treadle sft` without sft.data_file) and the size of a fresh
    model's tokenizer."""

    def validate(self) -> None:
        require(
            self.name == "custom" or not self.reward, "reward",
            f"only the custom task takes a reward function; task.name is {self.name!r}",
        )  # fmt: skip
        require(
            self.name != "custom" or bool(self.reward), "reward",
            'the custom task needs its reward function, e.g. task.reward="examples.custom_reward:reward"',
        )  # fmt: skip
        if self.reward:
            module, _, function = self.reward.partition(":")
            require(
                bool(module) and bool(function) and all(p.isidentifier() for p in [*module.split("."), function]),
                "reward", f'must be "package.module:function"; got {self.reward!r}',
            )  # fmt: skip
