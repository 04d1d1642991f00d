"""Packed attention: the span rule, the block-mask builder, and flex == dense == each sequence alone.

CPU: the rule's spans by hand; `block_mask` equals torch's own `create_block_mask` (the
reference builder) for packed segments and for a random span rule (the shape of a
thread tree's mask), built in one chunk or several, at lengths on and off the block
size; the flex layout (FlexAttention run eagerly, forward only: torch has no flex
backward on CPU) gives the same per-token logprobs as the dense layout and as each
sequence run alone, on random Llama 3 and Qwen3 models, through `label_logprobs` (RL)
and `packed_loss` (SFT); a hand-made thread-tree row (`PackedBatch.attend_end`) gives
each thread's own logprobs in both layouts. CUDA (skipped without a GPU): the flex layout's forward and
backward under bf16 autocast (compiled FlexAttention) agree with the dense layout's.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask
from transformers import AutoModelForCausalLM

from learner import packed_attention
from learner.attention_masks import BLOCK, block_mask, dense_mask, segment_attend_end, segment_mask_mod, span_mask_mod
from learner.label_logprobs import label_logprobs
from learner.packed_attention import DENSE, FLEX, forward_inputs, use_layout
from learner.packing import PackedBatch, pack
from learner.rl_batch import MicroBatch
from learner.sft import packed_loss
from tests.hf_models import bpe_tokenizer, model_config
from tests.learner.test_packing import locate

# On CPU FlexAttention runs its unfused reference, and says so once.
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
LENGTHS = (37, 150, 9, 90, 200, 61)  # packed into 3 rows of 256: two blocks, the last partly used


def test_spans_of_packed_segments_by_hand():
    # Row: sequence 1 in 0-1, sequence 2 in 2-4, padding in 5-6 (each padding slot sees only itself).
    ends = segment_attend_end(torch.tensor([[1, 1, 2, 2, 2, 0, 0]]))
    assert ends.tolist() == [[2, 2, 5, 5, 5, 6, 7]]
    mask = dense_mask(span_mask_mod(ends), 1, 7)[0, 0].int()
    assert mask.tolist() == [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
    ]


def _random_rule(kind: str, rows: int, length: int):
    rng = np.random.default_rng(length)
    if kind == "segments":
        sequences = [([1] * int(n), [True] * int(n)) for n in rng.integers(1, 300, 60)]
        return segment_mask_mod(torch.from_numpy(pack(sequences, length, rows).segment_ids))
    # A thread tree per row: a root prefix every later slot sees, then child threads that
    # each see the prefix and themselves (not each other), some slots with random spans.
    ends = np.zeros((rows, length), dtype=np.int64)
    for row in range(rows):
        prefix = int(rng.integers(100, 300))
        cuts = np.sort(rng.choice(np.arange(prefix + 1, length), size=4, replace=False))
        ends[row, :prefix] = length
        for start, end in zip([prefix, *cuts], [*cuts, length]):
            ends[row, start:end] = end
        odd = rng.choice(length, size=20, replace=False)
        ends[row, odd] = rng.integers(odd + 1, length + 1)
    return span_mask_mod(torch.from_numpy(ends))


@pytest.mark.parametrize("kind", ["segments", "tree"])
@pytest.mark.parametrize("length, max_elements", [(700, 1 << 26), (700, 5 * 704 * BLOCK), (512, 5 * 512 * 2 * BLOCK)])
def test_block_mask_equals_torchs_builder(kind, length, max_elements):
    rows = 5
    rule = _random_rule(kind, rows, length)
    got = block_mask(rule, rows, length, "cpu", max_elements=max_elements)
    want = create_block_mask(rule, rows, 1, length, length, device="cpu")
    assert got.shape == want.shape == (rows, 1, length, length)
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices", "q_num_blocks", "q_indices"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert 0 < int(got.full_kv_num_blocks.sum()) and 0 < int(got.kv_num_blocks.sum())  # both kinds of block occur


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer()


def _model(arch: str, tokenizer) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(model_config(arch, tokenizer)).eval()


def _packed(tokenizer) -> tuple[PackedBatch, list[list[int]]]:
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, len(tokenizer), n).tolist() for n in LENGTHS]
    batch = pack([(ids, [True] * len(ids)) for ids in sequences], seq_len=256, num_rows=3)
    assert batch.num_sequences == len(sequences)
    return batch, sequences


def _micro_batch(packed: PackedBatch) -> MicroBatch:
    zeros = np.zeros(packed.input_ids.shape, dtype=np.float32)
    return MicroBatch(packed, zeros, zeros, zeros, zeros.astype(np.int64), zeros.astype(np.int32) - 1)


def _alone(model, ids: list[int]) -> torch.Tensor:
    """log p(token i + 1 | tokens <= i) of one sequence run by itself."""
    logits = model(torch.tensor([ids])).logits[0, :-1]
    return logits.log_softmax(-1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


@pytest.mark.parametrize("arch", ["llama3", "qwen3"])
def test_flex_layout_gives_the_dense_layouts_and_unpacked_logprobs(arch, tokenizer):
    model = _model(arch, tokenizer)
    packed, sequences = _packed(tokenizer)
    with torch.no_grad():
        use_layout(model, DENSE)
        dense, _ = label_logprobs(model, _micro_batch(packed))
        use_layout(model, FLEX)
        assert isinstance(forward_inputs(model, packed, "cpu")["attention_mask"], BlockMask)
        flex, _ = label_logprobs(model, _micro_batch(packed))
        assert model.config._attn_implementation == packed_attention.ATTENTION
        torch.testing.assert_close(flex, dense, atol=1e-5, rtol=0)
        for ids in sequences:
            row, start = locate(packed, ids)
            got = flex[row, start : start + len(ids) - 1]
            torch.testing.assert_close(got, _alone(model, ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", [DENSE, FLEX])
def test_a_thread_tree_row_attends_as_each_thread_alone(layout, tokenizer):
    # Threads A = p0 p1 p2 p3 a4 a5 a6 and B = p0 p1 p2 p3 b4 b5 share the prefix p0-p3.
    # Laid out as a tree (learner/prefix_tree.py): p0-p3, A's a4-a6, a copy of p3, B's b4-b5,
    # two padding slots. p0-p2 are seen by every later slot; p3 and a4-a6 by A's slots only;
    # the copy of p3 and b4-b5 by B's only; padding by itself.
    p, a, b = [11, 12, 13, 14], [21, 22, 23], [31, 32]
    ids = p + a + [p[3]] + b + [0, 0]
    positions = [0, 1, 2, 3, 4, 5, 6, 3, 4, 5, 0, 0]
    ends = [10, 10, 10, 7, 7, 7, 7, 10, 10, 10, 11, 12]
    segments = [1] * 10 + [0, 0]
    rows = (np.array([x]) for x in (ids, positions, segments, [-100] * 12))
    batch = PackedBatch(*rows, num_sequences=2, attend_end=np.array([ends]))
    model = _model("llama3", tokenizer)
    use_layout(model, layout)
    with torch.no_grad():
        logp = model(**forward_inputs(model, batch, "cpu")).logits[0].log_softmax(-1)
        alone_a = model(torch.tensor([p + a])).logits[0].log_softmax(-1)
        alone_b = model(torch.tensor([p + b])).logits[0].log_softmax(-1)
    torch.testing.assert_close(logp[:7], alone_a, atol=1e-5, rtol=0)
    torch.testing.assert_close(logp[[0, 1, 2, 7, 8, 9]], alone_b, atol=1e-5, rtol=0)


def test_sft_loss_is_the_same_in_both_layouts(tokenizer):
    model = _model("llama3", tokenizer)
    packed, _ = _packed(tokenizer)
    with torch.no_grad():
        use_layout(model, DENSE)
        dense = packed_loss(model, packed)
        use_layout(model, FLEX)
        flex = packed_loss(model, packed)
    torch.testing.assert_close(flex, dense, atol=1e-6, rtol=1e-6)


def test_rows_of_one_sequence_need_no_mask_in_either_layout(tokenizer):
    model, reference = _model("qwen3", tokenizer), _model("qwen3", tokenizer)
    sequences = [list(range(5, 5 + n)) for n in (40, 25)]
    rows = pack([(ids, [True] * len(ids)) for ids in sequences], seq_len=40, num_rows=2, one_per_row=True)
    use_layout(model, FLEX)
    packed_attention.layout_of(model, "cpu")  # switches the model to treadle_packed: SDPA without a BlockMask
    inputs = forward_inputs(model, rows, "cpu")
    assert inputs["attention_mask"] is None
    with torch.no_grad():
        got, _ = label_logprobs(model, _micro_batch(rows))
        for row, ids in enumerate(sequences):
            torch.testing.assert_close(got[row, : len(ids) - 1], _alone(reference, ids), atol=1e-5, rtol=0)


def test_the_layout_follows_the_device_unless_pinned(tokenizer):
    assert packed_attention.choose_layout("cpu") == DENSE
    assert packed_attention.choose_layout(torch.device("cuda", 0)) == FLEX
    model = _model("llama3", tokenizer)
    assert packed_attention.layout_of(model, "cpu") == DENSE and model.config._attn_implementation == "sdpa"
    use_layout(model, FLEX)
    assert packed_attention.layout_of(model, "cpu") == FLEX
    with pytest.raises(ValueError, match="attention layout 'varlen'"):
        use_layout(model, "varlen")


def test_flex_attention_casts_mixed_dtypes_to_the_autocast_dtype():
    # Under autocast over fp32 weights q and k come out of RoPE in fp32 while v is bf16.
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 130, 16, generator=g), torch.randn(2, 2, 130, 16, generator=g)
    v = torch.randn(2, 2, 130, 16, generator=g).bfloat16()
    segments = torch.tensor([[1] * 70 + [2] * 60, [1] * 100 + [0] * 30])
    rule = segment_mask_mod(segments)
    module = torch.nn.Module()
    with torch.autocast("cpu", torch.bfloat16):
        mask = block_mask(rule, 2, 130, "cpu")
        out, _ = packed_attention.packed_attention_forward(module, q, k, v, mask, scaling=0.25)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 130, 4, 16)
    want = torch.nn.functional.scaled_dot_product_attention(
        q.bfloat16().float(), k.bfloat16().float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1),
        attn_mask=dense_mask(rule, 2, 130), scale=0.25,
    ).transpose(1, 2)  # fmt: skip
    torch.testing.assert_close(out.float(), want, atol=2e-2, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention's compiled kernels and backward need CUDA")
def test_cuda_flex_forward_and_backward_match_the_dense_layout(tokenizer):
    packed, _ = _packed(tokenizer)
    results = {}
    for layout in (DENSE, FLEX):
        model = _model("llama3", tokenizer).cuda().train()
        use_layout(model, layout)
        logprobs, _ = label_logprobs(model, _micro_batch(packed), autocast_dtype=torch.bfloat16)
        logprobs.sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[layout] = (logprobs.detach(), grads)
    torch.testing.assert_close(results[FLEX][0], results[DENSE][0], atol=3e-2, rtol=0)
    cosine = torch.nn.functional.cosine_similarity(results[FLEX][1], results[DENSE][1], dim=0)
    assert cosine > 0.999, cosine
