"""A LoRA policy end to end: `treadle train ... model.lora.rank=8` on a local Ray (the
committed APR model, two steps at max staleness 0, a checkpoint after each), then
`treadle train --resume` for a third step, and two learner ranks.

- The adapter reaches the engine: every token the rollout worker sampled at version 1
  (after the first sync) carries the logprob of the merged step-1 policy (`treadle model
  merge-lora` of RUN/checkpoints/step-1/policy) and not the base's, so the engine's output
  changed with the sync; without the sync those tokens would carry the base's logprobs.
  Version-2 tokens, sampled before and after the resume, match the merged step-2 policy
  (so the resumed learner restored the adapters it had).
- The merged checkpoint gives the adapter run's greedy outputs: merge-lora of
  RUN/final/adapter equals the run's merged RUN/final, and its greedy held-out evaluation
  in a fresh paged engine reproduces the evaluation the run's rollout worker made with
  the synced weights (accuracy, mean total and critical-path tokens), while the base
  reproduces the step-0 evaluation.
- Checkpoints hold adapters (peft's format) and learner states of adapters only.
- Two learner actors (replicate and FSDP2, gloo) train the same adapters as one learner,
  and save and load them.
"""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from actors.rollout_log import read_rollout_logs
from actors.run_log import read_jsonl
from learner.checkpoint import read_trained_key_list
from learner.models import load_model

REPO = Path(__file__).resolve().parents[2]
BASE = "checkpoints/countdown-3-sft-apr"
RUN = (
    "train.steps=2", "train.batch_groups=2", "rl.group_size=4", "train.max_new_tokens=128", "train.max_staleness=0",
    "train.eval_every=2", "train.eval_problems=8", "train.checkpoint_every=1", "train.keep_checkpoints=3",
    "train.dashboard=false", "train.object_store_mb=200", "model.lora.rank=8", "rl.lr=5e-3",
)  # fmt: skip


def treadle(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def merge(adapter: Path, out: Path) -> Path:
    result = treadle("model", "merge-lora", "--adapter", str(adapter), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The run directory after two steps and a resumed third."""
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    result = treadle("train", "configs/countdown-3-rl-apr.yaml", f"run_dir={run_dir}", *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    result = treadle("train", "--resume", str(run_dir), "train.steps=3")
    assert result.returncode == 0, result.stderr[-3000:]
    merge(run_dir / "checkpoints" / "step-2" / "policy", run_dir / "merged-2")
    return run_dir


def logprobs_of(model, row: dict) -> np.ndarray:
    """The model's logprob of each output token of a thread row."""
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([row["token_ids"]])).logits[0].float(), -1)
    n = row["num_prompt_tokens"]
    return np.array([logp[n + j - 1, row["token_ids"][n + j]].item() for j in range(len(row["token_ids"]) - n)])


def sampled_at(run_dir: Path, version: int, models: list) -> list[np.ndarray]:
    """Per model, |logprob under it - behaviour logprob| of every token sampled at `version`."""
    rows = [r for r in read_rollout_logs(run_dir / "rollouts").to_pylist() if version in r["versions"]]
    assert rows, f"no token was sampled at version {version}"
    gaps = [[] for _ in models]
    for row in rows:
        at = np.array(row["versions"]) == version
        for gap, model in zip(gaps, models):
            gap.append(np.abs(logprobs_of(model, row) - np.array(row["logprobs"]))[at])
    return [np.concatenate(gap) for gap in gaps]


def test_the_adapter_reaches_the_engine_at_every_sync(run, tmp_path):
    base = load_model(REPO / BASE)
    step_1 = load_model(merge(run / "checkpoints" / "step-1" / "policy", tmp_path / "merged-1"))
    with_sync, without = sampled_at(run, 1, [step_1, base])
    assert with_sync.max() < 1e-3  # the engine ran W + B A * alpha / r of step 1 (fp32 engine vs transformers)
    assert without.max() > 0.1  # and not the base: the sync changed what the engine computes
    # Version 2: sampled by the first run's worker and by the resumed run's fresh one, which
    # got its weights from the learner restored from step-2's adapters.
    (with_sync,) = sampled_at(run, 2, [load_model(run / "merged-2")])
    assert with_sync.max() < 1e-3
    steps = read_jsonl(run / "train_metrics.jsonl")
    assert [s["version"] for s in steps] == [1, 2, 3] and all(abs(s["mismatch_kl"]) < 1e-5 for s in steps)


def evaluate(config, checkpoint: Path) -> dict:
    """Greedy held-out evaluation as the run's rollout worker makes it (actors/actors.py), in a fresh engine."""
    from actors.rollout_core import RolloutCore
    from actors.run_inputs import prepare_inputs
    from reasoning.controllers.limits import ThreadLimits
    from reasoning.tasks import make_task
    from rollout import SamplingParams, make_engine
    from rollout.tokenizer import load_tokenizer

    train = config.train
    tokenizer = load_tokenizer(checkpoint)
    engine = make_engine(config.engine.backend, str(checkpoint), tokenizer, config.engine)
    sampling = SamplingParams(max_tokens=train.max_new_tokens, temperature=train.temperature)
    limits = ThreadLimits(**{**vars(config.threads), "max_thread_tokens": train.max_new_tokens})
    core = RolloutCore(engine, tokenizer, make_task(config.task), mode=train.mode, group_size=config.rl.group_size,
                       sampling=sampling, limits=limits)  # fmt: skip
    try:
        return asyncio.run(core.evaluate(prepare_inputs(config).held_out))
    finally:
        engine.close()


def test_the_merged_checkpoint_gives_the_adapter_runs_greedy_outputs(run, tmp_path):
    from safetensors.torch import load_file

    from configs.experiment import load_config

    final = run / "final"  # step 3's
    assert (final / "config.json").is_file() and (final / "adapter" / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((final / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and adapter_config["base_model_name_or_path"] == str((REPO / BASE).resolve())
    merged = merge(final / "adapter", tmp_path / "merged")
    keys = [read_trained_key_list(d) for d in (merged, final)]
    assert keys[0] == keys[1]
    ours, theirs = load_file(merged / "model.safetensors"), load_file(final / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=1e-6)

    # The run's evaluations: step 0 on the base, steps 2 and 3 on the workers' engines after
    # the syncs (step 3 after the resume); each merged checkpoint, evaluated afresh, repeats them.
    config = load_config(run / "config.yaml")
    figures = ("accuracy", "mean_total_tokens", "mean_critical_path_tokens")
    evaluations = {e["step"]: {k: e[k] for k in figures} for e in json.loads((run / "eval.json").read_text())}
    assert sorted(evaluations) == [0, 2, 3]
    assert evaluations[2] != evaluations[0]  # two steps at this learning rate changed the greedy outputs
    for step, checkpoint in ((3, merged), (2, run / "merged-2"), (0, REPO / BASE)):
        fresh = evaluate(config, checkpoint)
        assert {k: fresh[k] for k in figures} == evaluations[step], step


def test_checkpoints_hold_the_adapters(run):
    checkpoint = run / "checkpoints" / "step-3"
    policy = {p.name for p in (checkpoint / "policy").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= policy
    assert "model.safetensors" not in policy
    state = torch.load(checkpoint / "learner.pt", weights_only=False)["learner"]
    assert state["lora"] and state["version"] == 3
    assert state["model"] and all(".lora_A." in name or ".lora_B." in name for name in state["model"])
    adapter_bytes = (checkpoint / "policy" / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < (run / "final" / "model.safetensors").stat().st_size / 10


# ---- two learner ranks -------------------------------------------------------------


@pytest.fixture
def ray_session():
    import ray

    from actors.ray_setup import LOOPBACK, keep_ray_on_loopback

    keep_ray_on_loopback()
    ray.init(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False,
             _node_ip_address=LOOPBACK, log_to_driver=False)  # fmt: skip
    yield ray
    ray.shutdown()


def episode_rows() -> list[dict]:
    """Two groups of episodes with random tokens and uneven lengths, rewards that differ."""
    rng = np.random.default_rng(0)
    rows = []
    for e, (group, reward) in enumerate([("p#0", 1.0), ("p#0", 0.0), ("q#0", 1.0), ("q#0", 0.0), ("q#0", 0.0)]):
        prompt, output = int(rng.integers(3, 8)), int(rng.integers(5, 40))
        rows.append({
            "episode_id": f"e{e}", "group_id": group, "task": "countdown", "problem_id": group[0], "problem": "{}",
            "thread_id": 0, "parent_id": -1, "spawn_index": -1, "depth": 0, "role": "root",
            "token_ids": rng.integers(20, 1000, prompt + output).tolist(), "num_prompt_tokens": prompt,
            "trainable": [False] * prompt + [True] * output, "logprobs": rng.uniform(-6, -1, output).tolist(),
            "versions": [0] * output, "finish_reason": "stop", "reward": reward, "reason": "r",
        })  # fmt: skip
    return rows


@pytest.mark.parametrize("mode", ["replicate", "fsdp2"])
def test_two_lora_learners_equal_one(ray_session, tmp_path, mode):
    from actors.actors import LearnerActor
    from configs.typed import build
    from learner.lora_config import LoRAConfig
    from learner.lora_merge import AdapterMerger
    from rollout.checkpoint import read_state_dict
    from learner.rl_config import RLConfig
    from learner.rl_step import RLLearner
    from reasoning.episode_table import to_table

    ray = ray_session
    config = build(RLConfig, {"estimator": "grpo", "lr": 1e-2, "seq_len": 32, "rows": 1, "data_parallel": mode})
    lora = LoRAConfig(rank=4)
    table = to_table(episode_rows())
    torch.set_num_threads(1)
    single = RLLearner(load_model(REPO / BASE), replace(config, data_parallel="replicate"), lora=lora)
    single.step(table)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    learners = [LearnerActor.remote(str(REPO / BASE), config, rank, 2, address, lora=lora) for rank in range(2)]
    ref = ray.put(table.combine_chunks().to_batches()[0])
    ray.get([learner.step.remote([([ref], f"e{e}") for e in range(5)]) for learner in learners])
    weights = ray.get([learner.weights.remote() for learner in learners])
    assert weights[1] is None and set(weights[0]) == set(single.weights())
    for name, value in single.weights().items():
        np.testing.assert_allclose(weights[0][name], value, atol=2e-6, rtol=0, err_msg=name)

    assert ray.get([learner.save_state.remote(str(tmp_path)) for learner in learners]) == [1, 1]
    assert (tmp_path / "policy" / "adapter_config.json").is_file()
    assert ray.get([learner.load_state.remote(str(tmp_path)) for learner in learners]) == [1, 1]
    ray.get([learner.save.remote(str(tmp_path / "final"), [[1, 2]]) for learner in learners])
    final = load_model(tmp_path / "final").state_dict()
    merged = AdapterMerger.from_state(read_state_dict(REPO / BASE)).merge(weights[0])  # what the workers load
    np.testing.assert_allclose(final["model.layers.0.mlp.down_proj.weight"].numpy(),
                               merged["model.layers.0.mlp.down_proj.weight"], atol=1e-6)  # fmt: skip
    assert read_trained_key_list(tmp_path / "final" / "adapter") == [[1, 2]]
    for learner in learners:
        ray.kill(learner)
