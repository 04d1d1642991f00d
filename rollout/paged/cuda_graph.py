"""Decode-only steps replayed from CUDA graphs (EngineConfig.cuda_graphs).

Why: an eager decode step of a small model on a GPU is launch-bound. apr-228m at 256
rows on an H200 took 12.9 ms of wall time for 2.84 ms of GPU work: 579 kernels, each
launched from Python. A CUDA graph records the step's kernels once and replays them
with one launch, so the GPU no longer waits for the host.

How: when the engine starts, `CudaGraphs` records `PagedLlama.forward` (embedding, every
layer with its KV-cache write and decode attention, the logits) once per bucket of batch
sizes (`row_buckets`), largest first, into one memory pool shared by every graph. A
graph reads its inputs from static buffers that each step overwrites: token ids,
positions, KV write slots and context lengths (one int64 vector, laid out per bucket)
and the block tables ([max_num_seqs, max_blocks], max_blocks covering max_model_len). A
step of n rows runs the smallest bucket of at least n rows; rows n.. are padding: token
0 at position 0, context length 1, every block-table entry the scratch block, writing
their K/V to the scratch block's first slot. The scratch block is one extra block of the
KV cache that the block manager never hands out (the model runner allocates it), so a
padding row can neither overwrite nor read anyone's KV. A real row whose KV is already
cached (the re-run last query of a fully cached prompt) also writes to the scratch
slot: a cached block is never written. Entries of the table past a row's own blocks keep
whatever an earlier step left there: valid block ids, which attention masks by the
context length.

The table's width: kernels that walk each row's own blocks (triton, cpu) read only up
to the context length, so one width, max_blocks, serves every step; the kernel's grid
must depend on tensor shapes only (rollout/kernels/paged_decode_triton.py derives it
from q and block_tables.shape), never on values such as the longest context. The torch
kernel gathers and attends to the table's whole width, so for it the graphs are also
bucketed by width (powers of two), or a 4k-token window would make every step gather
4k keys per row.

What stays valid: the graph holds the addresses of the weights, the KV cache and the
static buffers. Weight updates copy into the weights in place
(`ModelRunner.load_weights`), and `PagedLlama.refresh` only repacks CPU weights, so the
graphs see new weights without a new capture; tests/rollout/test_cuda_graph.py checks
that no weight tensor moves.

Sampling stays outside the graph. It branches on each request's settings (greedy or
not, top-k/top-p, seeded per-request generators, which a graph would have to register
one by one), it is a handful of kernels on [rows, vocab] after the forward's hundreds,
and its token ids must reach the host anyway (one synchronisation per step either way).
Inside, it would need a graph per combination of settings for a saving of a few launches.

Costs: at start-up each graph runs the step once and records it (`capture_seconds`); GPU
memory for one step's activations, shared by the graphs, and for each graph's own float32
logits [rows, vocab]: the buckets up to 256 rows sum to 1,183 rows, 5 MB at the Countdown
tokenizer's 1,100 tokens, 0.7 GB at Qwen's 152k. (Copying every graph's logits into one
shared buffer would save that memory for a copy of [rows, vocab] in every step.)

On a CPU (`capture=False`) nothing is recorded: a step fills the same static buffers and
runs the forward on them. That is slower than the eager path and only there so that the
padding and buffer logic is tested without a GPU.
"""
from __future__ import annotations

import bisect
import itertools
import time
from array import array
from dataclasses import dataclass

import torch

from rollout.kernels.paged_decode import DecodeBatch, Workspace
from rollout.paged.attention import AttentionBatch
from rollout.paged.layout import StepLayout
from rollout.paged.model import PagedLlama

ROW_STEP = 32
"""Batch-size buckets: powers of two below ROW_STEP, then every multiple of it. A step
is padded by less than ROW_STEP rows (powers of two alone would pad 129 rows to 256)."""
KERNELS_READING_THE_WHOLE_TABLE = ("torch",)


def row_buckets(max_rows: int) -> list[int]:
    """1, 2, 4, 8, 16, then multiples of ROW_STEP up to max_rows, and max_rows itself."""
    buckets = [r for r in (1, 2, 4, 8, 16) if r < min(ROW_STEP, max_rows)]
    buckets += range(ROW_STEP, max_rows, ROW_STEP)
    return buckets + [max_rows]


def width_buckets(max_blocks: int, kernel: str) -> list[int]:
    """Block-table widths to capture: max_blocks alone, or for a kernel whose work grows
    with the table's width, every power of two below it as well."""
    if kernel not in KERNELS_READING_THE_WHOLE_TABLE:
        return [max_blocks]
    return [1 << i for i in range(max_blocks.bit_length()) if 1 << i < max_blocks] + [max_blocks]


@dataclass
class _Bucket:
    """The static inputs of one (rows, width) graph: views of the shared buffers."""

    rows: int
    width: int
    input_ids: torch.Tensor
    positions: torch.Tensor
    slots: torch.Tensor
    context_lens: torch.Tensor
    block_tables: torch.Tensor
    graph: "torch.cuda.CUDAGraph | None" = None
    logits: torch.Tensor | None = None
    """The graph's output: float32 [rows, vocab], overwritten by every replay."""


class CudaGraphs:
    """Runs decode-only steps of up to `max_rows` rows on the static buffers."""

    @torch.inference_mode()
    def __init__(
        self,
        model: PagedLlama,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        *,
        max_rows: int,
        max_blocks: int,
        scratch_block: int,
        decode_kernel: str,
        capture: bool,
    ):
        """`scratch_block`: a block of `kv_caches` outside the block manager's pool.
        `capture`: record CUDA graphs (a GPU); False runs the forward on the buffers."""
        k_cache = kv_caches[0][0]
        assert scratch_block < k_cache.shape[0], "the scratch block must exist in the KV cache"
        self.model = model
        self.kv_caches = kv_caches
        self.device = k_cache.device
        self.scratch_block = scratch_block
        self.scratch_slot = scratch_block * k_cache.shape[1]
        self.rows = row_buckets(max_rows)
        self.widths = width_buckets(max_blocks, decode_kernel)
        self._vectors = torch.zeros(4 * max_rows, dtype=torch.long, device=self.device)
        self._tables = torch.full((max_rows, max_blocks), scratch_block, dtype=torch.long, device=self.device)
        self._workspace = Workspace()  # the graphs' own: the eager path may regrow its buffers
        self._buckets = {(r, w): self._bucket(r, w) for r in self.rows for w in self.widths}
        self.num_steps = 0
        """Decode steps run here (replays, or forwards on the buffers without capture)."""
        self._last: _Bucket | None = None
        start = time.perf_counter()
        if capture:
            self._capture()
        self.capture_seconds = time.perf_counter() - start

    @property
    def num_graphs(self) -> int:
        """Graphs captured (0 without capture)."""
        return sum(bucket.graph is not None for bucket in self._buckets.values())

    def fits(self, layout: StepLayout) -> bool:
        """Whether a step without prefill chunks has a bucket."""
        return layout.num_decode <= self.rows[-1] and layout.decode_max_blocks <= self.widths[-1]

    @torch.inference_mode()
    def run(self, layout: StepLayout) -> torch.Tensor:
        """Float32 logits of the step's sampling rows (`layout.logits_rows`); writes the
        new K/V. Valid until the next `run`."""
        num_rows = layout.num_decode
        rows = self.rows[bisect.bisect_left(self.rows, num_rows)]
        width = self.widths[bisect.bisect_left(self.widths, layout.decode_max_blocks)]
        bucket = self._last = self._buckets[rows, width]
        self._load(layout, rows)
        if bucket.graph is not None:
            bucket.graph.replay()
            logits = bucket.logits
        else:
            logits = self._forward(bucket)
        self.num_steps += 1
        if len(layout.logits_rows) == num_rows:
            return logits[:num_rows]
        return logits.index_select(0, torch.tensor(layout.logits_rows, device=self.device))

    def replay_last(self) -> None:
        """Replay the last step's graph on the same inputs, which writes the same K/V to
        the same slots again: the graph's GPU time alone (benchmarks/engine_gpu.py)."""
        assert self._last is not None and self._last.graph is not None, "no graph has been replayed yet"
        self._last.graph.replay()

    def _load(self, layout: StepLayout, rows: int) -> None:
        """Copy the step's inputs, padded to `rows`, into the static buffers: one
        host-to-device copy, then one copy into the vector and one into the tables."""
        num_rows, width, pad = layout.num_decode, layout.decode_max_blocks, rows - layout.num_decode
        slots = layout.slots
        if not layout.all_written:  # rows whose KV is cached write to the scratch slot
            slots = [self.scratch_slot] * num_rows
            for row, slot in zip(layout.write_rows, layout.slots):
                slots[row] = slot
        packed = array("q", itertools.chain(
            layout.input_ids, [0] * pad, layout.positions, [0] * pad, slots, [self.scratch_slot] * pad,
            layout.decode_context_lens, [1] * pad, layout.decode_tables, [self.scratch_block] * (pad * width),
        ))
        staged = torch.frombuffer(packed, dtype=torch.long).to(self.device)
        self._vectors[: 4 * rows].copy_(staged[: 4 * rows])
        self._tables[:rows, :width].copy_(staged[4 * rows :].view(rows, width))

    def _bucket(self, rows: int, width: int) -> _Bucket:
        """Views for `rows` rows: ids, positions, slots and lengths consecutive in the vector."""
        ids, positions, slots, lens = self._vectors[: 4 * rows].view(4, rows)
        bucket = _Bucket(rows, width, ids, positions, slots, lens, self._tables[:rows, :width])
        self._pad(bucket)
        return bucket

    def _pad(self, bucket: _Bucket) -> None:
        """Every row of the bucket a padding row (what warm-up and capture run on)."""
        bucket.input_ids.zero_()
        bucket.positions.zero_()
        bucket.slots.fill_(self.scratch_slot)
        bucket.context_lens.fill_(1)
        bucket.block_tables.fill_(self.scratch_block)

    def _forward(self, bucket: _Bucket) -> torch.Tensor:
        batch = AttentionBatch(
            slots=bucket.slots, write_rows=None, num_decode=bucket.rows,
            decode=DecodeBatch(bucket.block_tables, bucket.context_lens, self._workspace), prefills=[],
        )
        return self.model.forward(bucket.input_ids, bucket.positions, self.kv_caches, batch, None)

    def _capture(self) -> None:
        """Warm every bucket up (Triton compiles on a first launch, which a capture may not
        do), then record them, largest first, so smaller graphs reuse the pool's memory."""
        order = sorted(self._buckets.values(), key=lambda b: (b.rows, b.width), reverse=True)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for bucket in order:
                self._pad(bucket)
                self._forward(bucket)
        torch.cuda.current_stream(self.device).wait_stream(side)
        torch.cuda.synchronize(self.device)
        pool = torch.cuda.graph_pool_handle()
        for bucket in order:
            self._pad(bucket)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, pool=pool):
                    bucket.logits = self._forward(bucket)
            except RuntimeError as e:
                raise RuntimeError(
                    f"engine.cuda_graphs: capturing the decode step of {bucket.rows} rows x {bucket.width} blocks "
                    f"failed ({e}); set engine.cuda_graphs=false to decode eagerly"
                ) from e
            bucket.graph = graph
        torch.cuda.synchronize(self.device)
