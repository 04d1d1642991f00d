"""The wordmath world end to end through the commands a user runs (the issue's forms):
`treadle data wordmath` (files, columns, the distinct count, flag errors naming the key),
`treadle model init` (the Qwen3 preset with the wordmath tokenizer), two steps of
`treadle sft configs/wordmath-sft.yaml` on the examples it generates into the run, and two
steps of `treadle train configs/wordmath-rl.yaml` (local Ray, math-verify rewards) from
that SFT checkpoint. The settings are the shipped configs' with a few dozen problems and a
smaller tokenizer text."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from actors.run_log import read_jsonl
from learner.checkpoint import load_trained_keys
from reasoning.math_task import read_math_problems

REPO = Path(__file__).resolve().parents[2]
SMALL = ("task.wordmath.num_train=40", "task.wordmath.num_val=8", "task.wordmath.tokenizer_problems=200")


def treadle(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_data_wordmath_as_in_the_issue(tmp_path):
    out = tmp_path / "D"
    result = treadle(
        "data", "wordmath", "--config", "configs/wordmath.yaml", "--out", str(out), "--train", "60", "--val", "12",
        "--seed", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "these settings admit 8,758,409,750 distinct problems" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["sft.jsonl", "train.jsonl", "val.jsonl"]
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and all(list(row) == ["id", "question", "answer", "structure"] for row in rows)
    # The math task reads them as is.
    train, val = read_math_problems(out / "train.jsonl"), read_math_problems(out / "val.jsonl")
    assert len(val) == 12 and not {p.key for p in train} & {p.key for p in val}
    examples = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    assert [e["id"] for e in examples] == [p.id for p in train]
    for example, row in zip(examples, rows):
        answer = json.loads(row["structure"])["answer"]
        assert example["messages"][1]["content"].endswith(f"\\boxed{{{answer}}}.")


def test_data_wordmath_count_and_bad_flags():
    counted = treadle("data", "wordmath", "--max-steps", "2", "--count")
    assert counted.returncode == 0 and "admit 2,447,235 distinct problems" in counted.stdout
    parts = treadle("data", "wordmath", "--config", "configs/wordmath-parts.yaml", "--count")
    assert parts.returncode == 0 and "admit 4,259,306,530,019 distinct problems" in parts.stdout
    flags = ("--min-parts", "3", "--max-parts", "3", "--min-part-steps", "2", "--min-steps", "5", "--max-steps", "9")
    assert treadle("data", "wordmath", *flags, "--count").returncode == 0
    bad_parts = treadle("data", "wordmath", "--min-parts", "3", "--max-parts", "2", "--count")
    assert bad_parts.returncode == 2 and "task.wordmath.min_parts: must be <= max_parts" in bad_parts.stderr
    bad = treadle("data", "wordmath", "--out", "/nonexistent/x", "--min-steps", "4", "--max-steps", "2")
    assert bad.returncode == 2 and "task.wordmath.min_steps: must be <= max_steps" in bad.stderr
    missing = treadle("data", "wordmath")
    assert missing.returncode == 2 and "--out" in missing.stderr and "Traceback" not in missing.stderr


def test_model_init_builds_the_wordmath_tokenizer_and_qwen3(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    result = treadle(
        "model", "init", "--config", "configs/wordmath.yaml", "--out", str(tmp_path / "m"),
        "task.wordmath.tokenizer_problems=200",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote qwen3-5m" in result.stdout
    config = AutoConfig.from_pretrained(str(tmp_path / "m"), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "m"), local_files_only=True)
    assert config.model_type == "qwen3" and config.vocab_size == len(tokenizer) == 652
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory) -> tuple[Path, str]:
    """(the run directory, its output) of two SFT steps from a fresh preset."""
    run = tmp_path_factory.mktemp("wordmath") / "sft"
    result = treadle(
        "sft", "configs/wordmath-sft.yaml", *SMALL, "sft.steps=2", "sft.warmup_steps=1", "sft.seq_len=256",
        "sft.rows=2", "sft.log_every=1", "sft.num_threads=1", f"run_dir={run}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return run, result.stdout


def test_two_steps_of_wordmath_sft_on_the_generated_examples(sft_run):
    sft_run, stdout = sft_run
    assert f"training on 40 examples of {sft_run / 'data' / 'sft.jsonl'}" in stdout
    assert sorted(p.name for p in (sft_run / "data").iterdir()) == ["sft.jsonl", "train.jsonl", "val.jsonl"]
    steps = [json.loads(line)["step"] for line in (sft_run / "sft_metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    train = read_math_problems(sft_run / "data" / "train.jsonl")
    assert load_trained_keys(sft_run / "final") == {p.key for p in train}  # what accuracy_unseen excludes


def test_two_steps_of_wordmath_rl_from_the_sft_checkpoint(sft_run, tmp_path):
    sft_run, _ = sft_run
    run = tmp_path / "rl"
    result = treadle(
        "train", "configs/wordmath-rl.yaml", f"train.checkpoint={sft_run / 'final'}", *SMALL, "rl.group_size=2",
        "rl.dynamic_sampling=false",  # a two-step SFT model's groups mostly score all 0: nothing would be left
        "train.batch_groups=2", "train.groups_in_flight=2", "train.max_new_tokens=32", "train.steps=2",
        "train.eval_every=2", "train.eval_problems=4", "train.checkpoint_every=0", "train.dashboard=false",
        f"run_dir={run}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    steps = read_jsonl(run / "train_metrics.jsonl")
    assert [s["version"] for s in steps] == [1, 2]
    assert all(sum(s["reasons"].values()) == 4 for s in steps)  # 2 groups of 2 episodes, each scored
    evaluation = json.loads((run / "eval.json").read_text())[-1]
    assert evaluation["step"] == 2 and 0.0 <= evaluation["accuracy"] <= 1.0
    assert evaluation["num_unseen"] == 4  # validation problems: not among the SFT checkpoint's training problems
    assert (run / "final" / "config.json").is_file()
