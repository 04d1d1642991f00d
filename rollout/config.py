"""EngineConfig: which generation backend runs and how its memory and batches are sized."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, one_of, require


@dataclass
class EngineConfig:
    """The rollout engine of one rollout worker (see rollout/factory.py: make_engine)."""

    backend: str = field(default="paged", metadata=one_of("paged", "hf", "vllm"))
    """`paged`: the embedded engine (paged KV cache, prefix caching, continuous batching).
    `hf`: transformers `generate`, the reference and the baseline. `vllm`: vLLM's async
    engine (the optional extra `treadle[vllm]`; see rollout/vllm_engine.py)."""
    device: str = field(default="cpu", metadata=one_of("cpu", "cuda"))
    """Where the model and the KV cache live."""
    dtype: str = field(default="float32", metadata=one_of("float32", "bfloat16", "float16", "auto"))
    """Weights, activations and KV cache dtype (logits and sampling are always float32);
    auto: bfloat16 on cuda, float32 on cpu."""
    block_size: int = field(default=16, metadata=bounds(ge=1, le=256))
    """Tokens per KV block (paged); a power of two. Prefix caching shares whole blocks only."""
    num_kv_blocks: int = field(default=0, metadata=bounds(ge=0, le=10_000_000))
    """KV blocks in the pool (paged, vllm); 0 sizes the pool from `kv_cache_mb`."""
    kv_cache_mb: float = field(default=256.0, metadata=bounds(gt=0, le=1_000_000))
    """KV cache memory in MiB when `num_kv_blocks` is 0 (paged, vllm)."""
    max_num_seqs: int = field(default=128, metadata=bounds(ge=1, le=100_000))
    """Most sequences in one step (paged, vllm); the batch size of one `generate` (hf)."""
    max_num_batched_tokens: int = field(default=2048, metadata=bounds(ge=1, le=10_000_000))
    """Token budget of one step (paged, vllm): decode tokens plus prefill chunks."""
    max_model_len: int = field(default=0, metadata=bounds(ge=0, le=10_000_000))
    """Context window (prompt + output); 0 uses the model's max_position_embeddings. The
    paged backend also caps it at the KV pool's capacity, so one sequence always fits."""
    enable_prefix_caching: bool = True
    """Reuse the KV of full blocks whose token prefix was computed before (paged, vllm)."""
    decode_kernel: str = field(default="auto", metadata=one_of("auto", "cpu", "torch", "triton"))
    """Paged kernels: `cpu` (C kernels compiled on first use, CPU and float32 only: decode
    attention, and on every step the norms, RoPE with the KV write, the SiLU gate and
    sampling without top-k/top-p; rollout/kernels/cpu), `torch` (torch ops, gather + SDPA
    for decode attention, any device) or `triton` (attention on a GPU). `auto`: `cpu` on
    a CPU in float32 (`torch`, with a warning, where the kernels cannot be built, e.g.
    without a C compiler), `triton` on a GPU where triton is installed, `torch` elsewhere."""
    packed_linear: bool = True
    """Paged on CPU: run matmuls through oneDNN with weights packed once (1.3-2.8x faster
    than F.linear for batches of 16+ rows); false uses F.linear everywhere."""
    compile_decode: bool = False
    """Paged: run decode-only steps through torch.compile (rollout/paged/decode_graph.py).
    Compiled once when the engine starts (2-core CPU: 3-7 s with inductor's disk cache warm,
    about 15 s cold; `runner.decode_graph.compile_seconds`). With the torch kernel, decode
    steps of the tiny preset ran 10-30% faster than eager at 2 threads; with the `cpu`
    kernels, eager decoding is the faster (`treadle bench engine`: 3.25-3.30x hf's speed
    eager, 2.51x with `--compile`).
    Falls back to eager decoding, with a warning, where compilation fails (e.g. no C++
    compiler)."""
    cuda_graphs: bool = True
    """Paged on a GPU (device=cuda; ignored on a CPU): decode-only steps replay CUDA graphs
    captured when the engine starts (rollout/paged/cuda_graph.py), one per batch-size
    bucket (1, 2, 4, 8, 16, then multiples of 32 up to max_num_seqs; a step is padded up to
    its bucket), so a decode step launches one graph instead of hundreds of kernels from
    Python. Steps with a prefill chunk run eagerly. Costs: start-up time to run and record
    every bucket once (`runner.cuda_graphs.capture_seconds`; with decode_kernel=torch
    also one graph per power-of-two block-table width), GPU memory for each bucket's
    float32 logits [rows, vocab] (max_num_seqs 256: 1,183 rows in all) plus one step's
    activations in one pool shared by all graphs, and one KV block of padding. false
    decodes eagerly (vLLM's enforce_eager). On a GPU it takes precedence over
    compile_decode, which is then ignored with a warning."""
    vllm_enforce_eager: bool = False
    """vllm: skip torch.compile. Start-up is shorter (on a 2-core CPU about 40 s instead of
    1.5 min with a warm compile cache, 3 min with a cold one); decoding is slower."""

    @property
    def torch_dtype(self) -> str:
        """The dtype in effect (a torch dtype's name): `dtype`, with auto resolved by the device."""
        if self.dtype == "auto":
            return "bfloat16" if self.device == "cuda" else "float32"
        return self.dtype

    def validate(self) -> None:
        require(self.block_size & (self.block_size - 1) == 0, "block_size", f"must be a power of two; got {self.block_size}")
        require(
            self.max_num_batched_tokens >= self.max_num_seqs,
            "max_num_batched_tokens",
            f"must be >= max_num_seqs ({self.max_num_seqs}) so every running sequence can decode each step",
        )
        require(
            self.decode_kernel != "triton" or self.device == "cuda",
            "decode_kernel",
            "triton runs on a GPU; use decode_kernel=torch with device=cpu",
        )
        require(
            self.decode_kernel != "cpu" or (self.device == "cpu" and self.torch_dtype == "float32"),
            "decode_kernel",
            f"cpu runs float32 on a CPU (here {self.torch_dtype} on {self.device}); use decode_kernel=torch or auto",
        )
