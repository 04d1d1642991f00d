"""Runs one scheduled step: lays the chunks out as tensors, runs the model, samples.

Owns everything torch of the paged engine: the weights, the KV cache (one K and one V
tensor per layer, allocated once at start-up), the RoPE tables and the random
generators (the engine's, and one per seeded request, dropped by `release`).

Decode-only steps take one of three paths: replayed CUDA graphs (`cuda_graphs`,
rollout/paged/cuda_graph.py; on a CPU the same static buffers without capture, for
tests), the torch.compile'd step (`compile_decode`, rollout/paged/decode_graph.py), or
the eager forward, which every step with a prefill chunk takes.
"""
from __future__ import annotations

import itertools
import warnings
from array import array
from typing import Mapping

import numpy as np
import torch
from transformers import PretrainedConfig

from rollout.checkpoint import apply_weight_update, plan_weight_update
from rollout.kernels.paged_decode import DecodeBatch, Workspace, choose_kernel, decode_function
from rollout.paged.attention import AttentionBatch, PrefillGroup, prefill_mask
from rollout.paged.cuda_graph import CudaGraphs
from rollout.paged.decode_graph import CompileFailed, DecodeGraph, warn_eager
from rollout.paged.layout import StepLayout, lay_out
from rollout.paged.model import PagedLlama, Rope
from rollout.paged.ops import CpuOps, TorchOps
from rollout.paged.sampler import SamplingRow, sample
from rollout.paged.scheduler import Chunk
from rollout.paged.sequence import Sequence
from rollout.paged.weights import LlamaWeights, ModelShape


def kv_bytes_per_block(shape: ModelShape, block_size: int, dtype: torch.dtype) -> int:
    """K and V of every layer for `block_size` tokens."""
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * shape.num_layers * block_size * shape.num_kv_heads * shape.head_dim * element


class ModelRunner:
    def __init__(
        self,
        config: PretrainedConfig,
        state: Mapping[str, torch.Tensor],
        *,
        num_blocks: int,
        block_size: int,
        max_model_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
        decode_kernel: str,
        packed_linear: bool,
        compile_decode: bool = False,
        cuda_graphs: bool = False,
        max_num_seqs: int = 0,
    ):
        """`cuda_graphs`: decode-only steps of up to `max_num_seqs` rows run on static,
        padded buffers, replayed as CUDA graphs on a GPU (on a CPU the forward runs on the
        buffers, for tests); the KV cache gets one extra block, past the `num_blocks` that
        the block manager hands out, for the padding rows' writes."""
        self.shape = ModelShape.from_config(config)
        self.device = torch.device(device)
        self.block_size = block_size
        self.weights = LlamaWeights(self.shape, dtype, self.device)
        self.weights.load(state)
        self.hf_views = self.weights.hf_views()
        cache_shape = (num_blocks + (1 if cuda_graphs else 0), block_size, self.shape.num_kv_heads, self.shape.head_dim)
        self.kv_caches = [
            (torch.zeros(cache_shape, dtype=dtype, device=self.device), torch.zeros(cache_shape, dtype=dtype, device=self.device))
            for _ in range(self.shape.num_layers)
        ]
        rope = Rope(config, self.shape.head_dim, max_model_len, dtype, self.device)
        self.decode_kernel = choose_kernel(decode_kernel, self.device, dtype)
        ops = (CpuOps if self.decode_kernel == "cpu" else TorchOps)(self.shape, rope)
        self.model = PagedLlama(self.shape, self.weights, rope, decode_function(self.decode_kernel), packed_linear, ops)
        self.workspace = Workspace()
        if compile_decode and cuda_graphs:
            warnings.warn(
                "engine.compile_decode is ignored: decode steps replay CUDA graphs (engine.cuda_graphs)", RuntimeWarning
            )
            compile_decode = False
        if compile_decode and self.shape.qk_norm:  # decode_graph.decode_forward has no q/k norm (Qwen3)
            warn_eager("the compiled decode step does not apply Qwen3's q_norm / k_norm")
            compile_decode = False
        self.decode_graph = (
            DecodeGraph.build(self.model, self.kv_caches, cpu_kernel=self.decode_kernel == "cpu") if compile_decode else None
        )
        self.cuda_graphs = None
        if cuda_graphs:
            assert max_num_seqs >= 1, "cuda_graphs needs max_num_seqs"
            self.cuda_graphs = CudaGraphs(
                self.model, self.kv_caches, max_rows=max_num_seqs, max_blocks=-(-max_model_len // block_size),
                scratch_block=num_blocks, decode_kernel=self.decode_kernel, capture=self.device.type == "cuda",
            )
        self.generator = torch.Generator(self.device)
        self.generator.seed()
        self._request_generators: dict[str, torch.Generator] = {}

    @torch.inference_mode()
    def run(self, chunks: list[Chunk]) -> list[tuple[Sequence, int, float]]:
        """Compute the chunks' KV; sample for those that reach their sequence's end.

        Returns (sequence, token id, policy logprob) for every sampling chunk."""
        layout = lay_out(chunks, self.block_size)
        if self.cuda_graphs is not None and not layout.prefills and self.cuda_graphs.fits(layout):
            return self._sample(layout, self.cuda_graphs.run(layout))
        prefill_lists = [
            values for p in layout.prefills for values in (p.query_rows, p.output_slots, p.block_tables, p.starts, p.lengths)
        ]
        ids, positions, slots, write_rows, logits_rows, tables, context_lens, *prefill_tensors = self._tensors(
            layout.input_ids, layout.positions, layout.slots, [] if layout.all_written else layout.write_rows,
            layout.logits_rows, layout.decode_tables, layout.decode_context_lens, *prefill_lists,
        )
        logits = None
        if self.decode_graph is not None and not layout.prefills:
            try:
                logits = self._run_decode_graph(layout, ids, positions, slots, write_rows, logits_rows, tables, context_lens)
            except CompileFailed as e:  # a recompilation failed: decode eagerly from now on
                warn_eager(str(e))
                self.decode_graph = None
        if logits is None:
            logits = self._run_eager(layout, ids, positions, slots, write_rows, logits_rows, tables, context_lens, prefill_tensors)
        return self._sample(layout, logits)

    def _sample(self, layout: StepLayout, logits: torch.Tensor) -> list[tuple[Sequence, int, float]]:
        if not layout.samplers:
            return []
        rows = [SamplingRow(c.seq.sampling, self._generator_for(c.seq)) for c in layout.samplers]
        tokens, logprobs = sample(logits, rows, self.generator, cpu_kernel=self.decode_kernel == "cpu")
        return list(zip([c.seq for c in layout.samplers], tokens, logprobs))

    def _run_decode_graph(self, layout, ids, positions, slots, write_rows, logits_rows, tables, context_lens) -> torch.Tensor:
        """A step of one-token chunks only, through the compiled decode graph."""
        tables = tables.view(layout.num_decode, layout.decode_max_blocks)
        if layout.all_written:
            new_visible = torch.ones(layout.num_decode, dtype=torch.bool, device=self.device)
            write_rows = None
        else:  # rows whose KV is already cached read it from the cache, not as a new key
            new_visible = torch.zeros(layout.num_decode, dtype=torch.bool, device=self.device)
            new_visible[write_rows] = True
        num_cached = context_lens - new_visible.long()
        logits = self.decode_graph.run(ids, positions, tables, num_cached, new_visible, slots, write_rows)
        if len(layout.logits_rows) < layout.num_decode:
            logits = logits.index_select(0, logits_rows)
        return logits

    def _run_eager(self, layout, ids, positions, slots, write_rows, logits_rows, tables, context_lens, prefill_tensors):
        dtype = self.kv_caches[0][0].dtype
        groups = []
        for i, p in enumerate(layout.prefills):
            query_rows, output_slots, block_tables, starts, lengths = prefill_tensors[5 * i : 5 * i + 5]
            groups.append(PrefillGroup(
                p.first_row, p.num_rows, query_rows, output_slots, block_tables.view(-1, p.max_blocks),
                prefill_mask(starts, lengths, p.max_len, p.max_blocks * self.block_size, dtype),
            ))
        batch = AttentionBatch(
            slots=slots,
            write_rows=None if layout.all_written else write_rows,
            num_decode=layout.num_decode,
            decode=DecodeBatch(tables.view(layout.num_decode, layout.decode_max_blocks), context_lens, self.workspace),
            prefills=groups,
        )
        every_row = len(layout.logits_rows) == layout.num_rows  # one-token chunks that all sample
        return self.model.forward(ids, positions, self.kv_caches, batch, None if every_row else logits_rows)

    def _tensors(self, *lists: list[int]) -> list[torch.Tensor]:
        """One int64 tensor per list, made with a single host-to-device copy (through an
        `array`, which packs Python ints 5x faster than `torch.tensor` does)."""
        packed = array("q", itertools.chain.from_iterable(lists))
        if not packed:
            return [torch.empty(0, dtype=torch.long, device=self.device) for _ in lists]
        tensor = torch.frombuffer(packed, dtype=torch.long).to(self.device)
        return list(tensor.split([len(values) for values in lists]))

    def load_weights(self, named_arrays: Mapping[str, np.ndarray]) -> None:
        """Overwrite weights by Hugging Face name (all checked before any is written)."""
        apply_weight_update(plan_weight_update(named_arrays, self.hf_views))
        self.model.refresh()

    def release(self, request_id: str) -> None:
        """Forget a finished request's generator."""
        self._request_generators.pop(request_id, None)

    def _generator_for(self, seq: Sequence) -> torch.Generator | None:
        if seq.sampling.seed is None or seq.sampling.temperature == 0:
            return None
        generator = self._request_generators.get(seq.request_id)
        if generator is None:
            generator = torch.Generator(self.device).manual_seed(seq.sampling.seed)
            self._request_generators[seq.request_id] = generator
        return generator

