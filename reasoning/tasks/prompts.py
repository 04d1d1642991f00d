"""Turning a problem's text (or chat messages) into prompt token ids, raw or by chat template.

Every task builds its prompt through `PromptBuilder`, so raw and chat prompts, the
system message and the BOS rule are decided in one place:
- raw: BOS (when the tokenizer has one) and the text, encoded without the tokenizer's
  own special tokens, so the BOS is never doubled;
- chat: `tokenizer.apply_chat_template(messages, add_generation_prompt=True)`, with the
  system prompt first when one is set and the messages do not start with their own;
- auto: chat when the tokenizer has a chat template (an instruct model), else raw (a base
  model), so one experiment file serves both.
`check(tokenizer)` refuses, at start-up, a chat prompt on a tokenizer with no template.
"""
from __future__ import annotations

from typing import Any, Sequence


class TaskError(ValueError):
    """A task that cannot run as configured (a file, a column, a tokenizer); names the key or file."""


Messages = Sequence[dict[str, str]]


class PromptBuilder:
    def __init__(self, prompt_format: str = "raw", system_prompt: str = ""):
        assert prompt_format in ("raw", "chat", "auto"), prompt_format
        self.prompt_format = prompt_format
        self.system_prompt = system_prompt

    def check(self, tokenizer: Any, needs_chat: bool = False) -> None:
        """Raise TaskError if this tokenizer cannot build the prompts (no chat template)."""
        if (self.prompt_format == "chat" or needs_chat) and not getattr(tokenizer, "chat_template", None):
            raise TaskError(
                "task.prompt_format: chat prompts need a tokenizer with a chat template; this one has none "
                "(set tokenizer.chat_template in the model's tokenizer_config.json, or use task.prompt_format=raw)"
            )

    def uses_chat(self, tokenizer: Any) -> bool:
        """Whether a problem's text becomes a chat for this tokenizer."""
        if self.prompt_format == "auto":
            return bool(getattr(tokenizer, "chat_template", None))
        return self.prompt_format == "chat"

    def text_ids(self, tokenizer: Any, text: str) -> list[int]:
        """A problem's text as a prompt: raw text after BOS, or the one user message of a chat."""
        if self.uses_chat(tokenizer):
            return self.chat_ids(tokenizer, [{"role": "user", "content": text.rstrip("\n")}])
        ids = list(tokenizer.encode(text, add_special_tokens=False))
        bos = tokenizer.bos_token_id
        return ids if bos is None else [bos, *ids]

    def chat_ids(self, tokenizer: Any, messages: Messages) -> list[int]:
        """Chat messages through the tokenizer's template, ending with the generation prompt."""
        messages = list(messages)
        if self.system_prompt and not (messages and messages[0].get("role") == "system"):
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # a BatchEncoding (return_dict defaults differ by version)
            ids = ids["input_ids"]
        return [int(i) for i in ids]
