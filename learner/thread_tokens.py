"""New single tokens in a pretrained model's vocabulary: `treadle model add-thread-tokens`.

A researcher's Hugging Face model (Qwen, Llama) spells `<spawn>` as several BPE pieces,
so a controller could never stop on it. `add_tokens` makes each given string one token:

- The tokenizer gets them as added tokens with `special=False, normalized=False`. Not as
  `additional_special_tokens`: the controllers decode outputs with
  `skip_special_tokens=True` and parse the markup from that text, which would then have
  lost every tag. A non-special added token is still matched whole before BPE runs, so it
  is one token wherever it appears, and decoding gives its text back.
- The embedding rows of the new ids (and of the untied LM head) are the mean of the
  rows of the tokens that were there before (Hewitt's recipe: the new tokens start with
  the average token's logit instead of a random one, and no old output distribution
  shifts much). Old rows are left untouched. When the new ids fit in padding rows the
  checkpoint already has (Qwen pads its vocabulary), nothing is resized; otherwise the
  embedding grows to the tokenizer's size rounded up to `pad_to_multiple_of` (rows past
  the tokenizer also get the mean). A tied head stays tied (transformers re-ties it).

A string the tokenizer already encodes as exactly that one token is skipped, so running
it on its own output adds nothing. The markup tags themselves come from the caller
(learner/ does not import reasoning/). Not covered: slow (SentencePiece-only)
tokenizers' quirks beyond what `add_tokens` handles; changing a string that is already
a *special* token into an ordinary one (refused with an error).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from learner.models import CheckpointError


class TokenAdditionError(ValueError):
    """A string that cannot be made one ordinary token of this tokenizer; names it and why."""


@dataclass
class AddedTokens:
    """What `add_tokens` did."""

    added: dict[str, int]
    """Each newly added string and its token id, in the order given."""
    present: dict[str, int]
    """Strings that were one token already (left alone), with their ids."""
    rows_before: int
    """Embedding rows before (the model's vocab_size)."""
    rows_after: int
    """Embedding rows after: rows_before, or the new tokenizer size padded up."""


def single_token_id(tokenizer: Any, text: str) -> int | None:
    """The id of `text` when `tokenizer` encodes it alone as exactly that one token (not the
    unknown token), else None. The same rule as reasoning/markup.py `tag_token_ids`."""
    encoded = tokenizer.encode(text, add_special_tokens=False)
    token_id = tokenizer.convert_tokens_to_ids(text)
    if len(encoded) != 1 or token_id is None or token_id == tokenizer.unk_token_id or encoded[0] != token_id:
        return None
    return int(token_id)


def add_tokens(model: Any, tokenizer: Any, texts: Sequence[str], pad_to_multiple_of: int = 64) -> AddedTokens:
    """Make every string of `texts` one ordinary token of `tokenizer`, with mean-initialized
    embedding (and untied head) rows in `model`; both are changed in place."""
    from tokenizers import AddedToken

    special = set(tokenizer.all_special_tokens)
    present = {t: i for t in dict.fromkeys(texts) if (i := single_token_id(tokenizer, t)) is not None}
    clashes = [t for t in present if t in special]
    if clashes:
        raise TokenAdditionError(
            f"{', '.join(clashes)}: already special tokens of this tokenizer, which decoding with "
            "skip_special_tokens=True drops; remove them from its special tokens first"
        )
    missing = [t for t in dict.fromkeys(texts) if t not in present]
    rows_before = model.get_input_embeddings().weight.shape[0]
    num_old_tokens = min(len(tokenizer), rows_before)  # the rows whose mean a new token starts from
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    added = {}
    for text in missing:
        token_id = single_token_id(tokenizer, text)
        if token_id is None:
            raise TokenAdditionError(f"{text}: still not one token after adding it to the tokenizer")
        added[text] = token_id
    if added:
        _mean_rows(model, num_old_tokens, sorted(added.values()), len(tokenizer), pad_to_multiple_of)
    rows_after = model.get_input_embeddings().weight.shape[0]
    return AddedTokens(added=added, present=present, rows_before=rows_before, rows_after=rows_after)


def _mean_rows(model: Any, num_old: int, new_ids: list[int], num_tokens: int, pad_to_multiple_of: int) -> None:
    """Resize (only when the new ids do not fit) and set the new ids' rows, and any rows the
    resize created, to the mean of rows [0, num_old) of the embedding and the untied head."""
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is embedding.weight
    rows_before = embedding.weight.shape[0]
    if num_tokens > rows_before:
        model.resize_token_embeddings(num_tokens, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False)
        embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
        if tied:
            assert head.weight is embedding.weight, "resize_token_embeddings untied a tied head"
    rows = sorted(set(new_ids) | set(range(rows_before, embedding.weight.shape[0])))
    targets = [embedding.weight] if tied or head is None else [embedding.weight, head.weight]
    if head is not None and not tied and getattr(head, "bias", None) is not None:
        targets.append(head.bias)
    with torch.no_grad():
        for weight in targets:
            mean = weight[:num_old].float().mean(0)
            weight[rows] = mean.to(weight.dtype)


def add_thread_tokens(
    model_dir: str | Path, out_dir: str | Path, tags: Sequence[str], pad_to_multiple_of: int = 64
) -> AddedTokens:
    """Load the Hugging Face checkpoint in `model_dir` (local files only, in its own dtype),
    make every tag one ordinary token (`add_tokens`) and save the model (safetensors) and
    tokenizer to `out_dir`, a different directory (the loaded weights may be memory-mapped
    from `model_dir`'s files)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir}: not a model checkpoint (no config.json)")
    if out_dir.resolve() == model_dir.resolve():
        raise CheckpointError(f"{out_dir}: write the new checkpoint to another directory than the model's")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto", local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{model_dir}: cannot load the model and its tokenizer: {e}") from None
    result = add_tokens(model, tokenizer, tags, pad_to_multiple_of)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return result
