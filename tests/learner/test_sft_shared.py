"""SFT with `sft.layout=shared`: one prefix tree per trace episode, the same loss as packed threads."""
from __future__ import annotations

import torch

from configs.experiment import load_config
from learner.models import init_model
from learner.packing import pack
from learner.prefix_tree import build_tree, packed_trees
from learner.sft import SequenceStream, packed_loss, training_units, unit_packer
from reasoning.tasks import make_task


def parallel_trace_families(num_problems: int):
    config = load_config("configs/countdown-3-sft-parallel.yaml", [f"task.countdown.num_train={num_problems}", "task.countdown.num_val=0"])
    task = make_task(config.task)
    problems, _ = task.generate()
    tokenizer = task.new_tokenizer(config.tokenizer)
    rows, _ = task.trace_rows(problems, config.traces, tokenizer)
    families: dict[str, list] = {}
    for row in rows:
        families.setdefault(row["episode_id"], []).append((row["token_ids"], row["trainable"]))
    return list(families.values()), config, tokenizer


def test_shared_trees_give_the_packed_loss_and_gradients_on_fewer_tokens():
    families, config, tokenizer = parallel_trace_families(3)
    sequences = [s for family in families for s in family]
    packed = pack(sequences, seq_len=512, num_rows=len(sequences))
    shared = packed_trees([build_tree(f) for f in families], seq_len=512, num_rows=len(families))
    assert packed.num_sequences == len(sequences) and shared.num_sequences == len(families)
    assert shared.num_trained_tokens == packed.num_trained_tokens
    assert shared.num_tokens < 0.75 * packed.num_tokens
    grads = []
    for batch in (packed, shared):
        torch.manual_seed(0)
        model = init_model(config.model, tokenizer)
        loss = packed_loss(model, batch)
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (packed_loss_value, packed_grads), (shared_loss_value, shared_grads) = grads
    assert abs(shared_loss_value - packed_loss_value) < 1e-5
    for a, b in zip(packed_grads, shared_grads):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_the_stream_advances_by_whole_trees_and_resumes_where_it_was():
    families, _, _ = parallel_trace_families(6)
    units, pack_units = training_units(families, "shared", seq_len=512), unit_packer("shared")
    assert len(units) == len(families)
    stream = SequenceStream(units, seed=3, pack=pack_units)
    first = [stream.next_batch(512, 1) for _ in range(2)]
    cursor = stream.cursor
    again = SequenceStream(units, seed=3, pack=pack_units)
    assert [again.next_batch(512, 1).input_ids.tolist() for _ in range(2)] == [b.input_ids.tolist() for b in first]
    resumed = SequenceStream(units, seed=3, **cursor, pack=pack_units)
    assert resumed.next_batch(512, 1).input_ids.tolist() == stream.next_batch(512, 1).input_ids.tolist()
