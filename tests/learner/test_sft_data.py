"""Generic SFT data (reasoning/sft_data.py): which tokens are trained, bad rows, and a
`treadle sft` run on a data file from a pretrained (tiny, random) model directory.

The tokenizer is built here: byte-level BPE trained on generated sentences, with a
ChatML-style chat template, so nothing is downloaded.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasoning.episode_table import to_table
from reasoning.sft_data import example_rows
from reasoning.tasks.prompts import PromptBuilder, TaskError
from reasoning.tasks.registry import make_task

REPO = Path(__file__).resolve().parents[2]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = "the a cat dog sat ran on under mat tree red blue one two three four is was what how many answer so".split()
CHAT = [
    {"role": "user", "content": "how many cats sat on the mat"},
    {"role": "assistant", "content": "two cats sat on the mat"},
    {"role": "user", "content": "what is red"},
    {"role": "assistant", "content": "the tree is red"},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(400)]
    specials = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(sentences, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )  # fmt: skip
    tokenizer.chat_template = CHATML
    directory = tmp_path_factory.mktemp("model")
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from rollout.tokenizer import load_tokenizer

    return load_tokenizer(model_dir)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def trained_spans(row: dict) -> list[list[int]]:
    """The runs of consecutive trained tokens."""
    spans, current = [], []
    for token, trained in zip(row["token_ids"], row["trainable"]):
        if trained:
            current.append(token)
        elif current:
            spans, current = [*spans, current], []
    return spans + ([current] if current else [])


def chat_ids(tokenizer, messages, generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def test_messages_train_exactly_the_assistant_turns(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"id": "c1", "messages": CHAT, "source": "ignored"}])
    rows, keys = example_rows(path, tokenizer, make_task("custom"), PromptBuilder("raw"))
    (row,) = rows
    assert row["token_ids"] == chat_ids(tokenizer, CHAT, generation_prompt=False)
    assert [tokenizer.decode(span) for span in trained_spans(row)] == [
        "two cats sat on the mat<|im_end|>",
        "the tree is red<|im_end|>",
    ]
    prompt = chat_ids(tokenizer, CHAT[:1], generation_prompt=True)
    assert row["num_prompt_tokens"] == len(prompt) and row["token_ids"][: len(prompt)] == prompt
    assert row["episode_total_tokens"] == row["episode_critical_path_tokens"] == sum(row["trainable"])
    assert (row["episode_id"], row["group_id"], row["problem_id"], row["task"]) == ("sft/c1", "sft/c1", "c1", "custom")
    problem = json.loads(row["problem"])
    assert problem["messages"] == CHAT[:3] and problem["source"] == "ignored"  # the last answer is left out
    # The custom task knows a chat by its messages before the last answer.
    assert keys == [["custom", json.dumps(CHAT[:3], sort_keys=True)]]
    assert to_table(rows).num_rows == 1  # the version-2 schema takes the rows


def test_prompt_response_raw_and_chat(tmp_path, tokenizer):
    example = {"prompt": "how many dogs ran\n", "response": "three dogs ran", "numbers": [7, 3, 5], "target": 15}
    path = tmp_path / "pairs.parquet"
    second = {**example, "id": 9, "prompt": "what is blue\n"}
    pq.write_table(pa.Table.from_pylist([{**example, "id": None}, second]), path)
    countdown = make_task("countdown")

    raw_rows, keys = example_rows(path, tokenizer, countdown, PromptBuilder("raw"))
    row = raw_rows[0]
    prompt = [tokenizer.bos_token_id, *tokenizer.encode("how many dogs ran\n", add_special_tokens=False)]
    response = tokenizer.encode("three dogs ran", add_special_tokens=False)
    assert row["token_ids"] == prompt + response + [tokenizer.eos_token_id]
    assert row["trainable"] == [False] * len(prompt) + [True] * (len(response) + 1)
    assert row["num_prompt_tokens"] == len(prompt)
    assert [r["episode_id"] for r in raw_rows] == ["sft/0", "sft/9"]
    assert "response" not in json.loads(row["problem"])
    assert keys == [[[3, 5, 7], 15]]  # both rows are about the same countdown problem

    chat_rows, _ = example_rows(path, tokenizer, countdown, PromptBuilder("chat", system_prompt="be brief"))
    row = chat_rows[0]
    prompt = PromptBuilder("chat", system_prompt="be brief").text_ids(tokenizer, "how many dogs ran\n")
    assert row["token_ids"][: len(prompt)] == prompt and row["num_prompt_tokens"] == len(prompt)
    assert [tokenizer.decode(span) for span in trained_spans(row)] == ["three dogs ran<|im_end|>"]
    assert tokenizer.decode(row["token_ids"]).startswith("<|im_start|>system\nbe brief<|im_end|>\n")


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "a"}', "row 1 (line 2): column response: expected non-empty text"),
        ('{"messages": [{"role": "user"}]}', "row 1 (line 2): column messages: message 0 must be an object"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "row 1 (line 2): column messages: no assistant message"),
        ('{"text": "hello"}', "row 1 (line 2): needs a messages column, or prompt and response columns"),
        ('{"prompt": "a", "response": "b", "messages": []}', "has both messages and prompt/response"),
        ('{"id": "x", "prompt": "a", "response": "b"}', "column id: 'x' is also the id of"),
        ("[1, 2]", "row 1 (line 2): expected a JSON object"),
    ],
)
def test_bad_rows_are_named(tmp_path, tokenizer, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": "x", "prompt": "a", "response": "b"}, line])
    with pytest.raises(TaskError) as e:
        example_rows(path, tokenizer, make_task("countdown"), PromptBuilder("raw"))
    assert str(path) in str(e.value) and message in str(e.value)


def test_a_template_that_ends_turns_with_eos(tmp_path, tokenizer):
    # Llama-3-like: BOS in the template, header tokens, the turn closed by EOS, no newline after.
    import copy

    llama_like = copy.deepcopy(tokenizer)
    llama_like.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}<|im_end|>\n\n{{ m.content }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant<|im_end|>\n\n{% endif %}"
    )
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CHAT}])
    (row,), _ = example_rows(path, llama_like, make_task("countdown"), PromptBuilder("raw"))
    assert row["token_ids"].count(llama_like.bos_token_id) == 1
    spans = [llama_like.decode(span) for span in trained_spans(row)]
    assert spans == ["two cats sat on the mat</s>", "the tree is red</s>"]


def test_a_template_that_rewrites_past_turns_is_refused(tmp_path, tokenizer):
    # Like templates that drop the thinking of earlier answers: an assistant turn renders
    # differently once a later turn follows it.
    import copy

    rewriting = copy.deepcopy(tokenizer)
    rewriting.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and not loop.last %}so{% else %}{{ m.content }}{% endif %}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CHAT}])
    with pytest.raises(TaskError, match=r"row 0 \(line 1\): column messages: the chat template is not prefix-stable"):
        example_rows(path, rewriting, make_task("countdown"), PromptBuilder("raw"))


def test_sft_on_a_data_file_from_model_path(tmp_path, model_dir):
    from learner.checkpoint import load_trained_keys
    from learner.models import load_model
    from rollout.tokenizer import load_tokenizer

    rng = random.Random(1)
    answers = [" ".join(rng.choices(WORDS, k=6)) for _ in range(6)]
    examples: list = [{"messages": [CHAT[0], {"role": "assistant", "content": answer}]} for answer in answers]
    examples += [{"prompt": "what is two", "response": "two is two", "numbers": [2, 1, 4], "target": 6}]
    examples += [{"prompt": " ".join(["the"] * 300), "response": "too long"}]
    data = write_jsonl(tmp_path / "data.jsonl", examples)
    config = tmp_path / "sft.yaml"
    config.write_text("# treadle sft sft.yaml\nname: sft-data\ntask:\n  prompt_format: chat\n")
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "actors.cli", "sft", str(config), f"model.path={model_dir}", f"sft.data_file={data}",
        "sft.steps=2", "sft.warmup_steps=1", "sft.seq_len=128", "sft.rows=2", "sft.log_every=1",
        "sft.num_threads=1", f"run_dir={run}",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left out 1 examples longer than sft.seq_len" in result.stdout
    assert load_trained_keys(run / "final") == {((1, 2, 4), 6)}
    model = load_model(run / "final")
    assert model.config.vocab_size == len(load_tokenizer(run / "final"))
    assert [json.loads(line)["step"] for line in (run / "sft_metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_chat_data_without_model_path_is_refused(tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", [{"messages": CHAT}])
    config = tmp_path / "sft.yaml"
    config.write_text("name: sft-data\ntask:\n  prompt_format: chat\n")
    command = [
        sys.executable, "-m", "actors.cli", "sft", str(config), f"sft.data_file={data}", f"run_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "model.path" in result.stderr
    assert not (tmp_path / "run").exists()
