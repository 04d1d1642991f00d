"""The learner's device and precision: config checks, the process-group backend, the CPU
path as it was, and (on a GPU only) one bf16 step with fp32 master weights and logprobs."""
from __future__ import annotations

import copy
import socket

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from configs.typed import ConfigError, build
from learner.distributed import LearnerDeviceError, learner_device, process_group_backend
from learner.rl_batch import build_batch
from learner.rl_config import RLConfig
from learner.label_logprobs import label_logprobs
from learner.rl_step import RLLearner

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")


def test_device_and_dtype_are_checked_by_name():
    assert build(RLConfig, {}).device == "cpu" and build(RLConfig, {}).dtype == "float32"
    assert build(RLConfig, {"device": "cuda", "dtype": "bfloat16"}).dtype == "bfloat16"  # availability is checked at start
    with pytest.raises(ConfigError, match="device: must be one of cpu, cuda"):
        build(RLConfig, {"device": "tpu"})
    with pytest.raises(ConfigError, match="dtype: must be one of float32, bfloat16"):
        build(RLConfig, {"dtype": "float16"})
    with pytest.raises(ConfigError, match="dtype: bfloat16 needs device cuda"):
        build(RLConfig, {"dtype": "bfloat16"})


def test_the_backend_follows_the_configured_device_not_the_machine():
    assert process_group_backend("cuda") == "nccl"
    assert process_group_backend("cpu") == "gloo"  # a CPU learner on a GPU machine: NCCL cannot reduce CPU tensors


def test_learner_device_names_the_key_when_no_gpu_is_there(monkeypatch):
    assert learner_device(RLConfig()) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LearnerDeviceError, match="rl.device: cuda was asked for"):
        learner_device(RLConfig(device="cuda"))
    with pytest.raises(LearnerDeviceError, match="rl.device"):
        RLLearner(tiny_model(), RLConfig(device="cuda"))


# ---- a tiny model and self-sampled episodes -----------------------------------------


def tiny_model(seed: int = 0, tie: bool = True) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=tie,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def rows(seed: int = 0) -> list[dict]:
    """Two episodes of one problem (rewards 1 and 0), two threads each, random tokens."""
    rng = np.random.default_rng(seed)
    out = []
    for e, reward in enumerate([1.0, 0.0]):
        for t, (num_prompt, num_out) in enumerate([(4, 9), (3, 5)]):
            out.append({
                "episode_id": f"e{e}", "group_id": "p#0", "problem_id": "p", "thread_id": t, "reward": reward,
                "token_ids": rng.integers(3, 96, num_prompt + num_out).tolist(), "num_prompt_tokens": num_prompt,
                "trainable": [False] * num_prompt + [True] * num_out,
                "logprobs": rng.uniform(-5, -3, num_out).tolist(), "versions": [0] * num_out,
            })  # fmt: skip
    return out


def test_the_cpu_learner_trains_the_model_it_was_given_in_fp32():
    torch.set_num_threads(1)
    model = tiny_model()
    learner = RLLearner(model, RLConfig(lr=1e-3, seq_len=32, rows=2, kl_coef=0.1))
    assert learner.model is model and learner.device == torch.device("cpu") and learner.autocast_dtype is None
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in learner.reference.parameters())
    # Naming the defaults explicitly changes nothing, bit for bit.
    explicit = RLLearner(tiny_model(), RLConfig(lr=1e-3, seq_len=32, rows=2, kl_coef=0.1,
                                                                device="cpu", dtype="float32"))  # fmt: skip
    learner.step(rows())
    explicit.step(rows())
    for (name, a), b in zip(learner.model.named_parameters(), explicit.model.parameters()):
        assert torch.equal(a, b), name
    # State dicts hold the live CPU tensors (no copies) and load back.
    state = learner.state_dict()
    assert state["model"]["model.norm.weight"].data_ptr() == model.model.norm.weight.data_ptr()
    fresh = RLLearner(tiny_model(seed=1), learner.config)
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.model.parameters(), model.parameters()))
    assert all(v.dtype == np.float32 for v in learner.weights().values())


# ---- on a GPU ----------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("head", ["full", "chunked"])
def test_a_bf16_step_on_cuda_keeps_fp32_master_weights_and_logprobs(head):
    model = tiny_model(tie=False)
    cpu_model = copy.deepcopy(model)
    config = RLConfig(lr=1e-3, seq_len=32, rows=2, kl_coef=0.1, device="cuda", dtype="bfloat16", logprob_head=head)
    learner = RLLearner(model, config)
    assert learner.autocast_dtype == torch.bfloat16
    for module in (learner.model, learner.reference):
        assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in module.parameters())
    micro = build_batch(rows(), estimator="grpo", seq_len=32, rows_per_micro_batch=2).micro_batches[0]
    with torch.no_grad():
        logprobs, entropy = label_logprobs(learner.model, micro, head, torch.bfloat16)
        reference, _ = label_logprobs(cpu_model, micro, head)
    assert logprobs.dtype == entropy.dtype == torch.float32 and logprobs.device.type == "cuda"
    np.testing.assert_allclose(logprobs.cpu().numpy(), reference.numpy(), atol=0.05)  # a bf16 forward, fp32 softmax
    metrics = learner.step(rows())
    assert np.isfinite(metrics["loss"]) and metrics["grad_norm"] > 0
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in learner.model.parameters())
    (optimizer,) = learner.optimizers
    states = [s for s in optimizer.state.values() if "exp_avg" in s]
    assert states and all(s["exp_avg"].dtype == s["exp_avg_sq"].dtype == torch.float32 for s in states)
    weights = learner.weights()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in weights.values())
    moved = {n for n, v in weights.items() if not np.array_equal(v, cpu_model.state_dict()[n].numpy())}
    assert "lm_head.weight" in moved
    # A GPU learner's state loads into a CPU learner.
    state = learner.state_dict()
    assert all(t.device.type == "cpu" for t in state["model"].values())
    cpu_learner = RLLearner(tiny_model(seed=1, tie=False), RLConfig(lr=1e-3, seq_len=32, rows=2, kl_coef=0.1))
    cpu_learner.load_state_dict(state)
    np.testing.assert_array_equal(cpu_learner.weights()["lm_head.weight"], weights["lm_head.weight"])


@needs_cuda
def test_nccl_reduces_cpu_sums_and_gpu_gradients_in_a_one_rank_group():
    import torch.distributed as dist

    from learner.data_parallel import all_reduce_gradients, all_reduce_sum

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(process_group_backend("cuda"), init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        totals = torch.tensor([1.5, 2.0], dtype=torch.float64)
        assert all_reduce_sum(totals) is totals and totals.tolist() == [1.5, 2.0]
        layer = torch.nn.Linear(4, 2).cuda()
        layer(torch.ones(3, 4, device="cuda")).sum().backward()
        expected = layer.weight.grad.clone()
        all_reduce_gradients(list(layer.parameters()))
        assert torch.equal(layer.weight.grad, expected)
    finally:
        dist.destroy_process_group()
