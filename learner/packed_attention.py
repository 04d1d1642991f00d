"""How packed rows attend: a layout per device, and the attention function it hands the model.

Two layouts of one mask rule (learner/attention_masks.py: each token sees its own
sequence causally, or, where `PackedBatch.attend_end` is set, a thread tree's spans):
  - `dense` (CPU): a [rows, 1, L, L] bool mask passed to SDPA. FlexAttention has no
    backward on CPU (torch 2.13: "FlexAttention does not support backward on CPU"), and
    its forward is slower there: tiny preset, the learner bench's APR-like mix in rows of
    4 x 512, one thread, no-grad forward: dense SDPA 24.6k tokens/s, flex eager (the
    unfused math reference) 5.6k, flex compiled (inductor's C++ template) 5.3k after a
    20 s compile.
  - `flex` (CUDA): a FlexAttention BlockMask built once per micro-batch from segment ids
    on the device, so no [rows, L, L] tensor exists and 128 x 128 blocks that the mask
    rules out entirely are skipped (attention work follows the sequences' lengths, not
    the row's). Chosen by design, not yet by a GPU measurement: `treadle bench learner
    --device cuda` measures it against causal rows and the dense mask.
A row layout with one sequence per row from column 0 (`PackedBatch.one_per_row`) needs
no mask in either: plain causal attention (SDPA's is_causal, flash on a GPU) is exact.

Why FlexAttention and not varlen attention: flash-attn's varlen path (transformers'
position_ids packing) cannot be installed on the GPU machines; torch's own
`torch.nn.attention.varlen` is marked experimental, and neither can express the
ancestor mask of prefix-shared thread trees (a token sees its thread and its ancestors'
prefix: two disjoint key ranges), which the same BlockMask builder takes unchanged.

The model side: the flex layout sets the model's attention implementation to
`treadle_packed` on its first packed forward, registered here with transformers'
AttentionInterface (the same API in transformers 5.17 and 5.25): flex_attention when
the mask is a BlockMask, SDPA for anything else (no mask, a 2-D padding mask), with
SDPA's mask builder, so the model behaves as an SDPA model for every other input. Under
autocast over fp32 weights, q and k arrive in fp32 (the RoPE tables follow the fp32
residual stream) while v is bf16; SDPA is on autocast's cast list, flex_attention is not
in every torch version, so this function casts q, k and v to the autocast dtype itself
(run as they come, the kernels would reject the mixed dtypes or run in fp32). On CUDA
flex_attention is compiled once (torch.compile; a new sequence length recompiles once,
then shapes are dynamic); on CPU it runs eagerly (forward only: the tests' path). Each packed forward
(`forward_inputs`) takes the layout of the model's device unless `use_layout` pinned one.
"""
from __future__ import annotations

import functools
from typing import Any

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from learner.attention_masks import block_mask, dense_mask, segment_mask_mod, span_mask_mod
from learner.packing import PackedBatch

DENSE, FLEX = "dense", "flex"
LAYOUTS = (DENSE, FLEX)
ATTENTION = "treadle_packed"  # the model's attention implementation under the flex layout
_PINNED = "_treadle_attention_layout"  # attribute of a model whose layout use_layout pinned


def choose_layout(device: torch.device | str) -> str:
    """The fastest layout measured on the device's kind: flex on CUDA, dense elsewhere."""
    return FLEX if torch.device(device).type == "cuda" else DENSE


def use_layout(model: torch.nn.Module, layout: str | None) -> None:
    """Pin `model`'s layout whatever its device (None: follow the device again)."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"attention layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    setattr(model, _PINNED, layout)


def layout_of(model: torch.nn.Module, device: torch.device | str) -> str:
    """The pinned layout, else the device's choice. Flex switches the model's attention
    implementation to treadle_packed (once; it runs SDPA for anything but a BlockMask, so
    the dense layout needs no switch back)."""
    layout = getattr(model, _PINNED, None) or choose_layout(device)
    if layout == FLEX and model.config._attn_implementation != ATTENTION:
        model.set_attn_implementation(ATTENTION)
        if model.config._attn_implementation != ATTENTION:  # transformers only warns when it cannot
            raise RuntimeError(f"{type(model).__name__}: transformers cannot switch its attention to {ATTENTION}")
    return layout


def forward_inputs(
    model: torch.nn.Module, packed: PackedBatch, device: torch.device | str, width: int | None = None
) -> dict[str, Any]:
    """input_ids, position_ids and attention_mask of the first `width` columns of `packed`
    (all by default) on `device`, the mask in the model's layout (None for one_per_row):
    the packed rows' rule, or the span rule of `packed.attend_end` where it is set."""
    device = torch.device(device)
    width = packed.input_ids.shape[1] if width is None else width
    rows = packed.input_ids.shape[0]
    mask = None
    if not packed.one_per_row:
        if packed.attend_end is None:
            rule = segment_mask_mod(torch.from_numpy(packed.segment_ids[:, :width]).to(device))
        else:
            rule = span_mask_mod(torch.from_numpy(packed.attend_end[:, :width]).to(device))
        build = block_mask if layout_of(model, device) == FLEX else dense_mask
        mask = build(rule, rows, width, device)
    return {
        "input_ids": torch.from_numpy(packed.input_ids[:, :width]).to(device),
        "position_ids": torch.from_numpy(packed.position_ids[:, :width]).to(device),
        "attention_mask": mask,
    }


def packed_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | BlockMask | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: q [B, Hq, L, D], k and v [B, Hkv, L, D]
    -> (output [B, L, Hq, D], no weights). FlexAttention for a BlockMask, SDPA otherwise."""
    if not isinstance(attention_mask, BlockMask):
        sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
        return sdpa(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if dropout > 0:
        raise ValueError("packed flex attention has no dropout: set the model's attention_dropout to 0")
    for name in ("sliding_window", "softcap", "s_aux"):  # not in the block mask: refuse rather than ignore
        if kwargs.get(name) is not None:
            raise ValueError(f"packed flex attention does not implement {name} (the model asks for {kwargs[name]!r})")
    device_type = query.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else value.dtype
    query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    heads, kv_heads = query.shape[1], key.shape[1]
    if heads & (heads - 1):  # as transformers does: grouped heads only when the head count is a power of 2
        key, value = key.repeat_interleave(heads // kv_heads, dim=1), value.repeat_interleave(heads // kv_heads, dim=1)
    output = _flex_attention(device_type)(
        query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=key.shape[1] != heads
    )
    return output.transpose(1, 2).contiguous(), None


@functools.cache
def _flex_attention(device_type: str):
    return torch.compile(flex_attention) if device_type == "cuda" else flex_attention


AttentionInterface.register(ATTENTION, packed_attention_forward)
AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
