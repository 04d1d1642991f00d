"""A generic SFT data set (JSON lines or Parquet) as episode-table rows with trained-token masks.

Each row of the file is one example, either
- `messages`: a chat (a list of {role, content}) rendered with the tokenizer's chat
  template (with `task.system_prompt` first when set and the chat has no system message
  of its own); the trained tokens are the assistant messages' tokens, each followed by
  the end-of-turn token the template closes it with, and nothing else; or
- `prompt` + `response` (text): the prompt built as the task builds its prompts
  (PromptBuilder: raw BOS + text, or the user's message through the chat template with
  the generation prompt); raw, the response's tokens and the EOS token are trained;
  chat, the response is the assistant message and is trained as above.
An `id` column names the example (else its index); other columns are ignored, except
that they stay in the row's `problem` JSON, where the task finds the problem's key
(`task.row_key`) for the trained-problem list. Bad rows raise TaskError naming the file,
the row and the column.

Finding the assistant tokens with any chat template: the conversation is rendered
incrementally, the prefix before each assistant message with the generation prompt and
the prefix through it without; the assistant span is the difference. Every render must
start with the tokens of the one before (the prefix property); a template that re-renders
earlier turns (one that strips past thinking, say) is refused with an error naming the
row. Tokens the template puts after the closing special token of an assistant turn (the
newline after ChatML's `<|im_end|>`) are not trained: the model stops at that token.
A template that closes an assistant turn with no special token has its whole span
trained. Not covered: tool calls and other structured message fields.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Hashable, Iterable, Sequence

from reasoning.tasks.prompts import PromptBuilder, TaskError
from reasoning.tasks.rows import read_messages, read_rows, row_id

Messages = list[dict[str, str]]


def example_rows(path: str | Path, tokenizer: Any, task: Any, prompts: PromptBuilder) -> tuple[list[dict], list]:
    """Version-2 episode rows (one root thread per example) of the file's examples, and
    the JSON-able keys of the task's problems they are about."""
    rows: list[dict[str, Any]] = []
    first_row_of: dict[str, str] = {}
    for index, (where, row) in enumerate(read_rows(path)):
        example_id = row_id(where, index, row)
        if example_id in first_row_of:
            raise TaskError(f"{where}: column id: {example_id!r} is also the id of {first_row_of[example_id]}")
        first_row_of[example_id] = where
        token_ids, trainable, problem = _example(where, row, tokenizer, prompts)
        rows.append(_episode_row(task.name, example_id, problem, token_ids, trainable))
    if not rows:
        raise TaskError(f"{path}: no examples")
    return rows, problem_keys((row["problem"] for row in rows), task)


def problem_keys(problems: Iterable[str], task: Any) -> list:
    """The distinct keys (as JSON lists, sorted) of the problems in these `problem` JSON
    objects that the task recognises (`task.row_key`)."""
    keys: set[Hashable] = set()
    for problem in problems:
        key = task.row_key(json.loads(problem))
        if key is not None:
            keys.add(key)
    return sorted((_jsonable(key) for key in keys), key=json.dumps)


def chat_tokens(where: str, tokenizer: Any, prompts: PromptBuilder, messages: Messages) -> tuple[list[int], list[bool]]:
    """The chat's token ids through its last assistant message, and which are trained."""
    if not getattr(tokenizer, "chat_template", None):
        raise TaskError(f"{where}: a chat needs a tokenizer with a chat template; this one has none (use model.path)")
    turns = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    if not turns:
        raise TaskError(f"{where}: column messages: no assistant message to train on")
    closing = _special_ids(tokenizer)
    ids: list[int] = []
    trainable: list[bool] = []
    for i in turns:
        before = _render(where, tokenizer, prompts, messages[:i], generation_prompt=True)
        after = _render(where, tokenizer, prompts, messages[: i + 1], generation_prompt=False)
        if before[: len(ids)] != ids:
            raise TaskError(
                f"{where}: column messages: the chat template is not prefix-stable: rendering the chat up to "
                f"message {i} changes the tokens of the earlier turns (a template that re-renders past turns, "
                "e.g. strips their thinking, cannot be trained turn by turn)"
            )
        if after[: len(before)] != before:
            raise TaskError(
                f"{where}: column messages: the chat template is not prefix-stable: message {i} rendered does not "
                "start with the generation prompt's tokens (the template, or a token merged across the boundary)"
            )
        span = after[len(before) :]
        num_trained = _closed_length(span, closing)
        trainable += [False] * (len(before) - len(ids)) + [True] * num_trained + [False] * (len(span) - num_trained)
        ids = after
    if not any(trainable):
        raise TaskError(f"{where}: column messages: the assistant messages render to no tokens")
    return ids, trainable


def raw_tokens(
    where: str, tokenizer: Any, prompts: PromptBuilder, prompt: str, response: str
) -> tuple[list[int], list[bool]]:
    """The raw prompt (BOS + text), then the response's tokens and EOS, which are trained."""
    if tokenizer.eos_token_id is None:
        raise TaskError(f"{where}: column response: the tokenizer has no EOS token to end the response with")
    prompt_ids = prompts.text_ids(tokenizer, prompt)
    response_ids = [*map(int, tokenizer.encode(response, add_special_tokens=False)), int(tokenizer.eos_token_id)]
    return [*prompt_ids, *response_ids], [False] * len(prompt_ids) + [True] * len(response_ids)


def _example(
    where: str, row: dict[str, Any], tokenizer: Any, prompts: PromptBuilder
) -> tuple[list[int], list[bool], dict]:
    """(token ids, trainable flags, the row without its response) of one example."""
    has_messages = row.get("messages") is not None
    has_text = row.get("prompt") is not None or row.get("response") is not None
    if has_messages and has_text:
        raise TaskError(f"{where}: has both messages and prompt/response columns; an example is one or the other")
    if has_messages:
        messages = read_messages(where, row["messages"])
        ids, trainable = chat_tokens(where, tokenizer, prompts, messages)
        last = max(i for i, message in enumerate(messages) if message["role"] == "assistant")
        return ids, trainable, {**row, "messages": row["messages"][:last]}
    if not has_text:
        raise TaskError(f"{where}: needs a messages column, or prompt and response columns")
    prompt, response = _text(where, row, "prompt"), _text(where, row, "response")
    if prompts.uses_chat(tokenizer):
        # The user's message as PromptBuilder.text_ids writes it, so the prompt is the task's.
        chat = [{"role": "user", "content": prompt.rstrip("\n")}, {"role": "assistant", "content": response}]
        ids, trainable = chat_tokens(where, tokenizer, prompts, chat)
    else:
        ids, trainable = raw_tokens(where, tokenizer, prompts, prompt, response)
    return ids, trainable, {k: v for k, v in row.items() if k != "response"}


def _text(where: str, row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{where}: column {column}: expected non-empty text, got {value!r}"[:300])
    return value


def _render(
    where: str, tokenizer: Any, prompts: PromptBuilder, messages: Messages, generation_prompt: bool
) -> list[int]:
    """The chat's token ids through the template, the system prompt first as PromptBuilder puts it."""
    from jinja2 import TemplateError

    if not generation_prompt and prompts.system_prompt and not (messages and messages[0]["role"] == "system"):
        messages = [{"role": "system", "content": prompts.system_prompt}, *messages]
    try:
        if generation_prompt:  # the task's own prompt
            ids = prompts.chat_ids(tokenizer, messages)
        else:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=True)
    except (TemplateError, ValueError, TypeError, KeyError, IndexError) as e:
        raise TaskError(f"{where}: column messages: the chat template fails on this chat ({e})"[:500]) from None
    if hasattr(ids, "keys"):  # a BatchEncoding (return_dict defaults differ by version)
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def _special_ids(tokenizer: Any) -> set[int]:
    """Ids of the special tokens (BOS, EOS, end-of-turn markers and other added specials)."""
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return ids | {int(i) for i, token in decoder.items() if getattr(token, "special", False)}


def _closed_length(span: Sequence[int], closing: set[int]) -> int:
    """How much of an assistant span is trained: through its last special token (the end of
    the turn), or all of it when it has none."""
    for position in range(len(span) - 1, -1, -1):
        if span[position] in closing:
            return position + 1
    return len(span)


def _episode_row(task_name: str, example_id: str, problem: dict, token_ids: list[int], trainable: list[bool]) -> dict:
    num_trained = sum(trainable)
    episode_id = f"sft/{example_id}"
    return {
        "episode_id": episode_id,
        "group_id": episode_id,
        "task": task_name,
        "problem_id": example_id,
        "problem": json.dumps(problem, sort_keys=True, ensure_ascii=False, default=str),
        "thread_id": 0,
        "parent_id": -1,
        "spawn_index": -1,
        "depth": 0,
        "role": "root",
        "token_ids": token_ids,
        "num_prompt_tokens": trainable.index(True),
        "trainable": trainable,
        "logprobs": None,
        "versions": None,
        "finish_reason": None,
        "reward": None,
        "reason": None,
        "episode_total_tokens": num_trained,
        "episode_critical_path_tokens": num_trained,
    }


def _jsonable(key: Any) -> Any:
    return [_jsonable(k) for k in key] if isinstance(key, (tuple, list)) else key
