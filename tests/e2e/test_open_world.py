"""The open world end to end: a user's Hugging Face model, tokenizer and chat template, their
data and reward function, through `treadle eval` and `treadle train` (the command forms the
README gives), on random-weight Llama 3 / Qwen2 / Qwen3 checkpoints and a BPE tokenizer
made in the test (tests/hf_models.py).

- eval of a GSM8K-style file with the `math` task: `paged` and `hf` give the same greedy
  outputs for each architecture (chat prompts, and raw ones for the model saved without a
  chat template); `--mode apr` on a vocabulary without the thread tags is
  refused naming the tag and the command that adds them;
- two learner steps of `treadle train configs/math-rl.yaml` on a CPU;
- a `custom` task whose reward function raises, hangs, returns NaN or a string on chosen
  rows, run in APR mode on the model after `treadle model add-thread-tokens`, with
  `rl.parallel_bonus`: every failure scores 0 with its reason, is counted, and the run
  finishes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from actors.run_log import read_jsonl
from reasoning.controllers.runtime import RUNTIME_REASONS
from reasoning.math_samples import write_sample_problems
from tests.hf_models import bpe_tokenizer, save_model

REPO = Path(__file__).resolve().parents[2]
ARCHS = ("llama3", "qwen2", "qwen3")
CPU = ("engine.device=cpu", "rl.device=cpu")


def treadle(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("open-world")
    instruct, base = bpe_tokenizer(), bpe_tokenizer(chat_template=None)
    # Qwen2 stands for a base model: no chat template, so the experiments' `auto` prompts are raw.
    models = {arch: save_model(root / arch, arch, base if arch == "qwen2" else instruct, seed=i)
              for i, arch in enumerate(ARCHS)}  # fmt: skip
    problems = root / "gsm8k.jsonl"
    write_sample_problems(problems)
    return root, models, problems


@pytest.mark.parametrize("arch", ARCHS)
def test_math_eval_gives_the_same_greedy_outputs_on_paged_and_hf(world, arch):
    root, models, problems = world
    outputs = {}
    for backend in ("paged", "hf"):
        out = root / f"eval-{arch}-{backend}"
        result = treadle(
            "eval", "configs/math-rl.yaml", f"model.path={models[arch]}", "engine.device=cpu", f"engine.backend={backend}",
            "--problems", str(problems), "--mode", "sequential", "--out", str(out),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["task"] == "math" and summary["num_problems"] == 11 and summary["backend"] == backend
        outputs[backend] = [json.loads(line)["output"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert outputs["paged"] == outputs["hf"]
    assert any(outputs["paged"])  # the model did write something


def test_a_thread_mode_on_a_vocabulary_without_the_tags_is_refused(world):
    root, models, problems = world
    result = treadle(
        "eval", "configs/math-rl.yaml", f"model.path={models['qwen3']}", "engine.device=cpu",
        "--problems", str(problems), "--mode", "apr", "--out", str(root / "refused"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "<spawn>" in result.stderr and "treadle model add-thread-tokens" in result.stderr
    assert "Traceback" not in result.stderr


def test_two_steps_of_math_rl_on_a_cpu(world):
    root, models, problems = world
    run = root / "math-rl"
    result = treadle(
        "train", "configs/math-rl.yaml", f"model.path={models['qwen3']}", f"task.train_file={problems}",
        f"task.eval_file={problems}", "train.steps=2", *CPU, "train.dashboard=false", f"run_dir={run}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    steps = read_jsonl(run / "train_metrics.jsonl")
    assert [s["version"] for s in steps] == [1, 2]
    assert all(s["tokens"] > 0 and sum(s["reasons"].values()) == 64 for s in steps)  # 8 groups of 8 episodes
    (evaluation,) = json.loads((run / "eval.json").read_text())[-1:]
    assert evaluation["step"] == 2 and 0.0 <= evaluation["accuracy"] <= 1.0
    assert (run / "final" / "config.json").is_file() and (run / "final" / "tokenizer_config.json").is_file()
    rollouts = list((run / "rollouts").rglob("*.parquet"))
    assert rollouts  # the version-2 rollout log


def test_a_hostile_reward_function_in_an_apr_run_with_the_parallel_bonus(world):
    root, models, _ = world
    tagged = root / "qwen3-tags"
    added = treadle("model", "add-thread-tokens", "--model", str(models["qwen3"]), "--out", str(tagged))
    assert added.returncode == 0, added.stderr[-2000:]
    data = root / "hostile.jsonl"
    rows = [{"id": f"h-{kind or i}", "prompt": f"Say {i}.", "answer": i, "hostility": kind}
            for i, kind in enumerate(["raises", "hangs", "nan", "str", None, None])]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = root / "hostile"
    result = treadle(
        "train", "configs/custom-rl.yaml", f"model.path={tagged}", f"task.train_file={data}", f"task.eval_file={data}",
        "task.reward=examples.hostile_rewards:by_row", "task.reward_timeout_s=1", "train.mode=apr",
        "rl.parallel_bonus=0.5", "rl.group_size=2", "train.batch_groups=3", "train.groups_in_flight=3",
        "train.max_new_tokens=24", "train.steps=2", "train.eval_every=0", *CPU, "train.dashboard=false",
        f"run_dir={run}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    steps = read_jsonl(run / "train_metrics.jsonl")
    assert [s["version"] for s in steps] == [1, 2]
    # Tickets 0-5 sample rows 0-5 in order: both steps together met every hostile row.
    reasons = {}
    for s in steps:
        for reason, count in s["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    assert reasons.get("reward_error", 0) >= 6 and reasons.get("timeout", 0) >= 2, reasons
    failures = steps[-1]["reward_failures"]
    assert {"raised", "timeout", "non_finite", "non_number"} <= set(failures), failures
    logged = [r for part in (run / "rollouts").rglob("*.parquet") for r in _rows(part)]
    hostile = [r for r in logged if r["problem_id"] in ("h-raises", "h-hangs", "h-nan", "h-str") and r["parent_id"] < 0]
    assert hostile and all(r["reward"] == 0.0 for r in hostile)
    scored = [r for r in hostile if r["finish_reason"] not in RUNTIME_REASONS]  # the rest ended before scoring
    assert scored and all(r["reason"] in ("reward_error", "timeout") for r in scored)


def _rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
