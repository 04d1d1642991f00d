"""The decode step of the paged model, compiled with torch.compile (EngineConfig.compile_decode).

A step whose chunks are all one-token decodes (the steady state of generation) runs
`decode_forward` instead of `PagedLlama.forward`: the same arithmetic, laid out for
inductor. On CPU most of an eager decode step of a small model with the torch kernel is
per-op overhead and the copy of every sequence's K/V out of the paged cache; compiled,
each layer's norms, RoPE and attention become one C++ loop nest that reads the cache in
place (rollout/kernels/paged_decode_inline.py), or, with decode_kernel=cpu, fused
elementwise loops around the C attention kernel's op, and the matmuls stay oneDNN calls
with packed weights (rollout/paged/linear.py: `treadle::packed_linear`).

Steps with a prefill chunk keep the eager path: their shapes vary more and they are rare.

Measured on the tiny preset (batch 64, 2-core CPU shared with other jobs, so noisy): with
the torch kernel, decode steps about 10-30% faster than eager at 2 threads (fewer OpenMP
fork/joins), about even at 1 thread. With the C kernels the eager step
(rollout/paged/ops.py: CpuOps) is the faster: dynamo's guards and the compiled graph's
Python wrapper cost more per step than the elementwise work they fuse. Off by default.

What stays correct:
- Weights (and packed weights) are graph inputs, never constants folded into the code,
  so an in-place weight update (`ModelRunner.load_weights`) reaches the next step.
- The graph does not write the KV cache: it attends to this step's K/V as arguments and
  returns them ([num_layers, B, kv_heads, head_dim]); `DecodeGraph.run` writes them to
  their slots afterwards.
- The batch size, the block-table width and the KV pool's block count are symbolic
  sizes, so one compilation serves every batch, context length and pool (torch.compile
  specialises a size traced as 0 or 1, so batches of one row and one-block tables are
  padded to two). It is compiled at start-up on a dummy batch (`compile_seconds`), so no
  request pays for it; later engines of the same model in the process reuse it.
- Where torch.compile cannot work (no C++ compiler on a CPU, an inductor error) the
  engine warns once, naming the cause, and decodes eagerly.
"""
from __future__ import annotations

import time
import warnings

import torch
import torch.nn.functional as F

from rollout.kernels.paged_decode_inline import paged_decode_inline
from rollout.paged.model import PagedLlama, apply_rope, rms_norm


def decode_forward(
    model: PagedLlama,
    kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
    attention,
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    block_tables: torch.Tensor,
    num_cached: torch.Tensor,
    new_visible: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One decode token per row: (float32 logits [B, vocab], new K, new V [num_layers, B, kv_heads, head_dim]).

    Row b is at `positions[b]`, its cached keys are positions 0 .. num_cached[b] - 1 of
    its block table, and it attends to its own new key when new_visible[b]. `attention`
    is `paged_decode_inline` or the CPU kernel's op, which take the same arguments."""
    s, w = model.shape, model.weights
    num_seqs = input_ids.shape[0]
    q_size, kv_size = s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim
    cos, sin = model.rope(positions)
    h = F.embedding(input_ids, w.embed)
    new_k, new_v = [], []
    for layer, (qkv_proj, o_proj, gate_up_proj, down_proj), (k_cache, v_cache) in zip(w.layers, model.linears, kv_caches):
        x = rms_norm(h, layer.input_norm, s.rms_norm_eps)
        qkv = qkv_proj.graph_call(x)
        qk = apply_rope(qkv[:, : q_size + kv_size].view(num_seqs, -1, s.head_dim), cos, sin)
        q, k = qk[:, : s.num_heads], qk[:, s.num_heads :]
        v = qkv[:, q_size + kv_size :].view(num_seqs, s.num_kv_heads, s.head_dim)
        new_k.append(k)
        new_v.append(v)
        attn = attention(q, k, v, k_cache, v_cache, block_tables, num_cached, new_visible, model.scale)
        h = h + o_proj.graph_call(attn.reshape(num_seqs, q_size))
        x = rms_norm(h, layer.post_norm, s.rms_norm_eps)
        gate, up = gate_up_proj.graph_call(x).chunk(2, dim=-1)
        h = h + down_proj.graph_call(F.silu(gate) * up)
    h = rms_norm(h, w.norm, s.rms_norm_eps)
    return model.lm_head.graph_call(h).float(), torch.stack(new_k), torch.stack(new_v)


def compiler_problem(device: torch.device) -> str | None:
    """Why torch.compile cannot build CPU kernels here, or None when it can."""
    if device.type != "cpu":
        return None
    from torch._inductor import cpp_builder
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        cpp_builder.get_cpp_compiler()
    except InvalidCxxCompiler as e:
        return f"no C++ compiler for inductor ({_first_line(e)})"
    return None


MIN_SIZE = 2
"""Batches of one row, and block tables one block wide, are padded to two: torch.compile
specialises a symbolic size that is 0 or 1 when traced, and would compile again for it."""


def _pad(input_ids, positions, block_tables, num_cached, new_visible):
    """At least MIN_SIZE rows (a padding row attends to its own new key only) and
    MIN_SIZE block-table columns (block 0, past every row's num_cached)."""
    pad_rows = max(0, MIN_SIZE - input_ids.shape[0])
    pad_cols = max(0, MIN_SIZE - block_tables.shape[1])
    block_tables = F.pad(block_tables, (0, pad_cols, 0, pad_rows))
    return (
        F.pad(input_ids, (0, pad_rows)), F.pad(positions, (0, pad_rows)), block_tables,
        F.pad(num_cached, (0, pad_rows)), F.pad(new_visible, (0, pad_rows), value=True),
    )


class CompileFailed(RuntimeError):
    """torch.compile could not build (or rebuild) the decode graph; the message says why."""


def warn_eager(problem: str) -> None:
    warnings.warn(f"engine.compile_decode: {problem}; decoding without compilation", RuntimeWarning, stacklevel=2)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def _compile_errors() -> tuple[type[BaseException], ...]:
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

    return TorchDynamoException, CppCompileError, InvalidCxxCompiler


class DecodeGraph:
    """Runs pure-decode steps through the compiled `decode_forward`."""

    def __init__(self, model: PagedLlama, kv_caches: list[tuple[torch.Tensor, torch.Tensor]], compiled, attention):
        self.model = model
        self.kv_caches = kv_caches
        self._forward = compiled
        self._attention = attention
        self.compile_seconds = 0.0
        for cache in (c for pair in kv_caches for c in pair):  # one graph for every pool size
            torch._dynamo.mark_dynamic(cache, 0)

    @classmethod
    def build(
        cls, model: PagedLlama, kv_caches: list[tuple[torch.Tensor, torch.Tensor]], cpu_kernel: bool = False
    ) -> "DecodeGraph | None":
        """Compile (timed, on a dummy batch); None, with a warning, where that fails.
        `cpu_kernel`: attend with the CPU kernel's op instead of `paged_decode_inline`."""
        problem = compiler_problem(kv_caches[0][0].device)
        if problem is None:
            attention = paged_decode_inline
            if cpu_kernel:
                from rollout.kernels.cpu.attention import paged_decode_cpu_op as attention
            graph = cls(model, kv_caches, torch.compile(decode_forward, fullgraph=True), attention)
            start = time.perf_counter()
            try:
                graph.warm_up()
            except CompileFailed as e:
                problem = str(e)
            else:
                graph.compile_seconds = time.perf_counter() - start
                return graph
        warn_eager(problem)
        return None

    @torch.inference_mode()
    def warm_up(self) -> None:
        """Compile on a dummy batch of 3 rows by 2 blocks (block 0; the cache is only read).
        The two sizes differ so that they become two symbols, not one."""
        device = self.kv_caches[0][0].device

        def zeros(*size: int, dtype=torch.long) -> torch.Tensor:
            return torch.zeros(size, dtype=dtype, device=device)

        self._call(zeros(3), zeros(3), zeros(3, 2), zeros(3), zeros(3, dtype=torch.bool))

    def run(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        block_tables: torch.Tensor,
        num_cached: torch.Tensor,
        new_visible: torch.Tensor,
        slots: torch.Tensor,
        write_rows: torch.Tensor | None,
    ) -> torch.Tensor:
        """Logits of every row; writes the new K/V of `write_rows` (None: all) to `slots`."""
        num_rows = input_ids.shape[0]
        if num_rows < MIN_SIZE or block_tables.shape[1] < MIN_SIZE:
            input_ids, positions, block_tables, num_cached, new_visible = _pad(
                input_ids, positions, block_tables, num_cached, new_visible
            )
        logits, new_k, new_v = self._call(input_ids, positions, block_tables, num_cached, new_visible)
        if write_rows is not None:
            new_k, new_v = new_k.index_select(1, write_rows), new_v.index_select(1, write_rows)
        elif num_rows < logits.shape[0]:  # drop the padding rows
            new_k, new_v = new_k[:, :num_rows], new_v[:, :num_rows]
        for (k_cache, v_cache), k, v in zip(self.kv_caches, new_k, new_v):
            k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slots, k)
            v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slots, v)
        return logits[:num_rows]

    def _call(self, input_ids, positions, block_tables, num_cached, new_visible):
        for tensor in (input_ids, positions, block_tables, num_cached, new_visible):
            torch._dynamo.mark_dynamic(tensor, 0)
        torch._dynamo.mark_dynamic(block_tables, 1)
        try:
            return self._forward(
                self.model, self.kv_caches, self._attention, input_ids, positions, block_tables, num_cached, new_visible
            )
        except _compile_errors() as e:
            raise CompileFailed(f"torch.compile failed: {type(e).__name__}: {_first_line(e)}") from e
