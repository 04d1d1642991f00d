"""What `treadle train` refuses before Ray starts (actors/run_inputs.py), each naming its key."""
from __future__ import annotations

import pytest
from transformers import GPT2Config, GPT2LMHeadModel

from actors.errors import UsageError
from actors.run_inputs import json_key, prepare_inputs
from configs.experiment import load_config
from reasoning.math_samples import write_sample_problems
from tests.hf_models import bpe_tokenizer, save_model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    tokenizer = bpe_tokenizer()
    save_model(root / "qwen3", "qwen3", tokenizer)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer))).save_pretrained(root / "gpt2")
    tokenizer.save_pretrained(root / "gpt2")
    write_sample_problems(root / "gsm8k.jsonl")
    return root


def inputs(*overrides: str):
    return prepare_inputs(load_config("configs/math-rl.yaml", ["engine.device=cpu", "rl.device=cpu", *overrides]))


def test_a_good_run_reads_its_problems_and_keys(world):
    run = inputs(f"model.path={world / 'qwen3'}", f"task.train_file={world / 'gsm8k.jsonl'}",
                 f"task.eval_file={world / 'gsm8k.jsonl'}")  # fmt: skip
    assert run.policy == str(world / "qwen3") and len(run.train_problems) == len(run.held_out) == 11
    assert {json_key(k)[0] for k in run.trained_keys} == {"math"}  # the problems it will have trained on


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([], "train.checkpoint: no policy to start from"),
        (["model.path={root}/missing"], "model.path: .*missing is not a model directory"),
        (["model.path={root}/gpt2", "task.train_file={root}/gsm8k.jsonl"], "model_type 'gpt2'.*hf or vllm"),
        (["model.path={root}/qwen3"], "task.train_file: the math task needs a problem file"),
        (["model.path={root}/qwen3", "task.train_file={root}/gsm8k.jsonl"], "task.eval_file: evaluations"),
        (["model.path={root}/qwen3", "task.train_file={root}/gsm8k.jsonl", "task.eval_file={root}/gsm8k.jsonl",
          "train.mode=apr"], "<spawn>.*treadle model add-thread-tokens"),
        (["model.path={root}/qwen3", "task.name=custom", "task.reward=nosuchmodule:reward",
          "task.train_file=examples/custom-train.jsonl", "train.eval_every=0"], "task.reward: .*nosuchmodule"),
    ],
)  # fmt: skip
def test_bad_inputs_are_refused_naming_the_key(world, overrides, message):
    with pytest.raises(UsageError, match=message):
        inputs(*(o.format(root=world) for o in overrides))
