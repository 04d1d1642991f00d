"""Loading a model directory's tokenizer, offline: what every stage and backend uses.

A checkpoint directory holds its tokenizer beside the model (treadle writes both; a
Hugging Face model directory ships both), so `load_tokenizer(dir)` is
`AutoTokenizer.from_pretrained(dir)` restricted to local files, with an error that names
the directory when there is no tokenizer there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class TokenizerError(ValueError):
    """A directory without a loadable tokenizer; names the directory."""


def load_tokenizer(directory: str | Path) -> Any:
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise TokenizerError(f"{directory}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); a model directory needs its tokenizer")
    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as e:
        raise TokenizerError(f"{directory}: the tokenizer does not load ({e})") from None
