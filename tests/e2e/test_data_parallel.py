"""Two learner actors with gloo make the same update as one learner on the same batch,
with whole replicas (all-reduced gradients) and with FSDP2 (sharded parameters), in the
packed layout and in the prefix-shared one (each group's threads as one token tree).

Real Ray actors and a real torch.distributed process group on 127.0.0.1; the committed
APR model; episodes with random tokens of the model's vocabulary, uneven thread lengths
(so the token-balanced shards differ in size), a child thread that continues its
parent's context (as a parallel block's branch does, so the shared layout shares it) and
two groups with different rewards. Episode-mean normalization and two mini-batches
exercise the global loss weights.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import ray
import torch

from actors.ray_setup import LOOPBACK, free_port, keep_ray_on_loopback
from configs.typed import build
from learner.models import load_model
from learner.rl_config import RLConfig
from learner.rl_step import RLLearner
from reasoning.episode_table import to_table

CHECKPOINT = "checkpoints/countdown-3-sft-apr"
CONFIG = build(RLConfig, {"estimator": "grpo", "lr": 1e-3, "seq_len": 64, "rows": 1, "mini_batches": 2,
                          "normalization": "episode_mean", "grad_clip": 0.5})  # fmt: skip


def rows() -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for e, (problem, reward) in enumerate([("p", 1.0), ("p", 0.0), ("q", 1.0), ("q", 0.0), ("q", 0.0)]):
        parent: list[int] = []
        for t in range(2):
            # The child's prompt is its parent's whole context and a few tokens of its own.
            prompt = int(rng.integers(3, 8) if t == 0 else rng.integers(1, 4))
            output = int(rng.integers(5, 26))
            ids = parent + rng.integers(20, 1000, prompt + output).tolist()
            prompt += len(parent)
            parent = ids
            out.append({
                "episode_id": f"e{e}", "problem_id": problem, "numbers": [1, 2], "target": 3, "thread_id": t,
                "parent_id": -1 if t == 0 else 0, "depth": t, "role": "root" if t == 0 else "child",
                "token_ids": ids, "num_prompt_tokens": prompt, "trainable": [False] * prompt + [True] * output,
                "logprobs": rng.uniform(-6, -1, output).tolist(), "versions": [0] * output,
                "finish_reason": "stop", "reward": reward,
            })  # fmt: skip
    return out


@pytest.fixture(scope="module")
def ray_session():
    keep_ray_on_loopback()
    ray.init(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False,
             _node_ip_address=LOOPBACK, log_to_driver=False)  # fmt: skip
    yield
    ray.shutdown()


@pytest.mark.parametrize("mode, layout", [("replicate", "packed"), ("fsdp2", "packed"), ("replicate", "shared")])
def test_two_gloo_learners_equal_one_learner(ray_session, tmp_path, mode, layout):
    from actors.actors import LearnerActor

    config = replace(CONFIG, data_parallel=mode, layout=layout)
    table = to_table(rows())
    single = RLLearner(load_model(CHECKPOINT), config)
    torch.set_num_threads(1)
    expected = single.step(table)
    assert expected["micro_batches"] >= 4 and expected["updates"] == 2

    address = f"127.0.0.1:{free_port()}"
    learners = [LearnerActor.remote(CHECKPOINT, config, rank, 2, address) for rank in range(2)]
    assert sorted(ray.get([learner.ready.remote() for learner in learners])) == [0, 1]
    ref = ray.put(table.combine_chunks().to_batches()[0])
    handles = [([ref], f"e{e}") for e in range(5)]
    results = ray.get([learner.step.remote(handles) for learner in learners])
    weights = ray.get([learner.weights.remote() for learner in learners])
    assert weights[1] is None  # rank 0 publishes

    for name, value in single.weights().items():
        np.testing.assert_allclose(weights[0][name], value, atol=2e-6, rtol=0, err_msg=name)
    for key in ("loss", "policy_loss", "entropy", "grad_norm", "mismatch_kl", "clip_fraction"):
        assert results[0][key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
    assert results[0]["token_staleness"] == expected["token_staleness"]

    # The checkpoint path: whole states saved by rank 0, loaded by every rank.
    assert ray.get([learner.save_state.remote(str(tmp_path)) for learner in learners]) == [1, 1]
    assert (tmp_path / "learner.pt").is_file() and (tmp_path / "policy" / "model.safetensors").is_file()
    np.testing.assert_allclose(
        load_model(tmp_path / "policy").model.norm.weight.detach().numpy(), weights[0]["model.norm.weight"], atol=0
    )
    assert ray.get([learner.load_state.remote(str(tmp_path)) for learner in learners]) == [1, 1]
    for learner in learners:
        ray.kill(learner)
