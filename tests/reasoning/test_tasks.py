"""Tasks without a model: prompts (raw and chat template), files, the train/held-out split,
scoring that never raises, keys, and the config's checks."""
from __future__ import annotations

import json

import pytest

from configs.typed import ConfigError, build
from reasoning.countdown.problems import Problem
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.math_samples import write_sample_problems
from reasoning.tasks import TaskConfig, TaskError, make_task
from reward import Reason
from tests.hf_models import bpe_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_chat_prompts_are_the_tokenizers_chat_template(tmp_path, tokenizer):
    write_sample_problems(tmp_path / "m.jsonl")
    task = make_task(TaskConfig(name="math", prompt_format="chat", system_prompt="Be brief."))
    problem = task.read_problems(tmp_path / "m.jsonl")[0]
    from reasoning.math_task import math_prompt

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": math_prompt(problem)}]
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert task.prompt_ids(problem, tokenizer) == list(expected)
    assert tokenizer.decode(task.prompt_ids(problem, tokenizer)).endswith("<|im_start|>assistant\n")


def test_raw_prompts_put_bos_only_where_the_tokenizer_has_one(tmp_path, tokenizer):
    write_sample_problems(tmp_path / "m.jsonl")
    task = make_task("math")
    problem = task.read_problems(tmp_path / "m.jsonl")[0]
    from reasoning.math_task import math_prompt

    # This tokenizer has no BOS (as Qwen's): the text alone.
    assert task.prompt_ids(problem, tokenizer) == tokenizer.encode(math_prompt(problem) + "\n", add_special_tokens=False)
    # Countdown's own tokenizer has one: <bos> `target|numbers` newline, as the SFT traces.
    countdown = build_tokenizer()
    ids = make_task("countdown").prompt_ids(Problem("p", (3, 12, 19), 34), countdown)
    assert ids == [countdown.bos_token_id, *countdown.encode("34|3 12 19\n")]


def test_a_chat_prompt_on_a_tokenizer_without_a_template_is_refused_at_the_check():
    task = make_task(TaskConfig(name="math", prompt_format="chat"))
    with pytest.raises(TaskError, match="task.prompt_format: chat prompts need a tokenizer with a chat template"):
        task.check(bpe_tokenizer(chat_template=None))


def test_custom_rows_take_a_prompt_or_messages_and_keep_every_column(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"id": 7, "prompt": "Say 3.", "answer": 3, "meta": {"level": 2}},
        {"messages": [{"role": "user", "content": "Say 4."}], "answer": 4},
    ])  # fmt: skip
    task = make_task(TaskConfig(name="custom", reward="examples.custom_reward:reward"))
    first, second = task.read_problems(path)
    assert first.id == "7" and first.row["meta"] == {"level": 2} and second.id == "1"
    assert task.prompt_ids(first, tokenizer) == tokenizer.encode("Say 3.", add_special_tokens=False)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Say 4."}], add_generation_prompt=True)
    assert task.prompt_ids(second, tokenizer) == list(chat["input_ids"])  # messages always take the template
    assert task.row_key({"prompt": "Say 3."}) == first.key


@pytest.mark.parametrize(
    "row, message",
    [
        ({"answer": 1}, "exactly one of the columns prompt and messages"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "exactly one of"),
        ({"prompt": "  "}, "column prompt: expected non-empty text"),
        ({"messages": [{"role": "user"}]}, "column messages: message 0"),
        ({"prompt": "a", "id": True}, "column id"),
    ],
)
def test_bad_custom_rows_are_named(tmp_path, row, message):
    path = write_jsonl(tmp_path / "c.jsonl", [row])
    with pytest.raises(TaskError, match=f"c.jsonl: row 0.*{message}"):
        make_task(TaskConfig(name="custom", reward="examples.custom_reward:reward")).read_problems(path)


def test_custom_scores_with_the_users_function_and_never_raises(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "Say 3.", "answer": 3, "hostility": "raises"}])
    good = make_task(TaskConfig(name="custom", reward="examples.custom_reward:reward", reward_timeout_s=2))
    hostile = make_task(TaskConfig(name="custom", reward="examples.hostile_rewards:by_row", reward_timeout_s=2))
    try:
        (problem,) = good.read_problems(path)
        assert good.score(problem, "it is 3").reason is Reason.CORRECT
        assert good.score(problem, "it is 4").reward == 0.0
        verdict = hostile.score(problem, "it is 3")
        assert verdict.reward == 0.0 and verdict.reason is Reason.REWARD_ERROR and "ValueError" in verdict.detail
        assert hostile.failures == {"raised": 1}
    finally:
        good.close()
        hostile.close()


def test_the_split_keeps_held_out_questions_out_of_training(tmp_path):
    write_sample_problems(tmp_path / "all.jsonl")
    lines = (tmp_path / "all.jsonl").read_text().splitlines()
    (tmp_path / "test.jsonl").write_text("\n".join(lines[:3]) + "\n")
    task = make_task(TaskConfig(name="math", train_file=str(tmp_path / "all.jsonl"), eval_file=str(tmp_path / "test.jsonl")))
    train, held_out = task.split()
    assert len(held_out) == 3 and len(train) == 8 and not {p.key for p in train} & {p.key for p in held_out}
    # One file for both: training keeps it all (every held-out problem is then seen).
    same = make_task(TaskConfig(name="math", train_file=str(tmp_path / "test.jsonl"), eval_file=str(tmp_path / "test.jsonl")))
    assert [len(part) for part in same.split()] == [3, 3]
    with pytest.raises(TaskError, match="task.train_file"):
        make_task("math").split()


def test_countdown_generates_its_split_when_no_file_is_given():
    config = build(TaskConfig, {"countdown": {"numbers": 3, "max_number": 30, "target_max": 50, "num_train": 40, "num_val": 5}})
    train, held_out = make_task(config).split()
    assert len(train) == 40 and len(held_out) == 5 and not {p.key for p in train} & {p.key for p in held_out}


def test_final_answers_for_votes():
    assert make_task("countdown").final_answer("x <answer>3+4</answer>") == "3+4"
    assert make_task("math").final_answer("so \\boxed{12}.") == "12" and make_task("math").final_answer("twelve") is None
    custom = make_task(TaskConfig(name="custom", reward="examples.custom_reward:reward"))
    assert custom.final_answer("work\n  42 \n\n") == "42"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "custom"}, "task.reward: the custom task needs its reward function"),
        ({"name": "math", "reward": "a:b"}, "task.reward: only the custom task takes a reward function"),
        ({"name": "custom", "reward": "examples.custom_reward"}, 'task.reward: must be "package.module:function"'),
    ],
)
def test_config_checks_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        build(TaskConfig, data, path="task")


def test_auto_prompts_follow_the_tokenizer(tmp_path):
    write_sample_problems(tmp_path / "m.jsonl")
    task = make_task(TaskConfig(name="math", prompt_format="auto"))
    problem = task.read_problems(tmp_path / "m.jsonl")[0]
    instruct, base = bpe_tokenizer(), bpe_tokenizer(chat_template=None)
    task.check(base)  # a base model's tokenizer is fine: auto falls back to raw
    chat = make_task(TaskConfig(name="math", prompt_format="chat")).prompt_ids(problem, instruct)
    raw = make_task("math").prompt_ids(problem, base)
    assert task.prompt_ids(problem, instruct) == chat and task.prompt_ids(problem, base) == raw != chat
