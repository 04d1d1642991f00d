"""The paged model's matmuls: torch's `F.linear`, or oneDNN with the weight packed once.

On CPU, `F.linear` (MKL sgemm) repacks the weight matrix on every call. oneDNN's linear
with a weight reordered once into its blocked layout (`torch.ops.mkldnn`, the path
torch.compile's CPU backend uses for frozen weights) is 1.3-2.8x faster for 64 to 2048
rows on this project's 2-core AVX-512 machine, and slower for a handful of rows, where
the per-call setup dominates; so rows below `PACKED_MIN_ROWS` take `F.linear`. Results
agree with `F.linear` to float32 rounding (observed |diff| <= 2e-6 on unit activations).

`packed=False` (EngineConfig.packed_linear) is the plain path; so is any device other
than CPU and any torch build without the oneDNN ops. After the weight tensor changes in
place (a weight update) call `refresh()`.

Under torch.compile (rollout/paged/decode_graph.py) a packed linear is called through the
custom op `treadle::packed_linear`: inductor lowers `mkldnn._linear_pointwise` only for
weights frozen into the graph as constants, which a weight update could not reach, so the
op hides the oneDNN call from it and takes the packed weight as an ordinary input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PACKED_MIN_ROWS = 16
"""Below this many rows F.linear wins (measured: 5 us vs 19 us at 1 row, 256x128)."""


def packed_linear_available(device: torch.device) -> bool:
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class Linear:
    """y = x @ weight.T + bias, for x of shape [rows, in_features]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, packed: bool):
        self.weight = weight
        self.bias = bias
        self.packed = packed and weight.dtype in (torch.float32, torch.bfloat16) and packed_linear_available(weight.device)
        self._packed_weight: torch.Tensor | None = None
        self.refresh()

    def refresh(self) -> None:
        """Re-pack after `weight` changed in place."""
        if self.packed:
            self._packed_weight = torch.ops.mkldnn._reorder_linear_weight(self.weight.contiguous(), None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed_weight is None or x.shape[0] < PACKED_MIN_ROWS:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self._packed_weight, self.bias, "none", [], "")

    def graph_call(self, x: torch.Tensor) -> torch.Tensor:
        """`self(x)` in a form torch.compile can trace with the weights as graph inputs."""
        if self._packed_weight is None:
            return F.linear(x, self.weight, self.bias)
        return packed_linear(x, self.weight, self._packed_weight, self.bias)


@torch.library.custom_op("treadle::packed_linear", mutates_args=())
def packed_linear(x: torch.Tensor, weight: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias through oneDNN with `packed` (weight reordered), F.linear for few rows."""
    if x.shape[0] < PACKED_MIN_ROWS:
        return F.linear(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


@packed_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])
