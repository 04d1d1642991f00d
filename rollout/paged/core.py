"""The paged engine core: scheduler + model runner + stop rules, one `step()` at a time.

    core = PagedCore.from_model("runs/sft/model", EngineConfig(), decode=tokenizer.decode)
    engine = AsyncEngine(core)  # what make_engine("paged", ...) returns

Weight updates (`load_weights`) copy new values into the running weights between steps.
Sequences in flight continue: their later tokens carry the new version, while the KV
they already computed stays as the old weights made it (as in vLLM-style RL systems;
the learner's importance weights correct for the stale policy). The prefix cache is
reset on every update, so no request admitted afterwards starts from old-weight KV.

Stats: `prefill_tokens_computed` counts KV computed for the tokens a sequence had when it
was admitted (its prompt, plus its output when recomputed after preemption);
`prefix_cache_hit_tokens` the tokens whose KV was found in the cache instead.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from rollout.checkpoint import eos_token_ids, read_config, read_state_dict
from rollout.config import EngineConfig
from rollout.engine import Completion, EngineStats, FinishReason
from rollout.errors import EngineConfigError
from rollout.paged.block_manager import BlockManager
from rollout.paged.model_runner import ModelRunner, kv_bytes_per_block
from rollout.paged.scheduler import Chunk, Scheduler
from rollout.paged.sequence import Sequence
from rollout.paged.weights import ModelShape
from rollout.requests import Request, validate_request
from rollout.stopping import Decode, StopChecker


class PagedCore:
    def __init__(
        self,
        runner: ModelRunner,
        scheduler: Scheduler,
        *,
        max_model_len: int,
        eos_token_ids: tuple[int, ...],
        decode: Decode | None = None,
    ):
        self.runner = runner
        self.scheduler = scheduler
        self.max_model_len = max_model_len
        self.vocab_size = runner.shape.vocab_size
        self.version = 0
        self._eos_token_ids = eos_token_ids
        self._decode = decode
        self._sequences: dict[str, tuple[Sequence, StopChecker]] = {}
        self._tokens_generated = 0
        self._prefill_tokens = 0

    @classmethod
    def from_model(cls, source: Any, config: EngineConfig, *, decode: Decode | None = None) -> "PagedCore":
        """From a checkpoint directory or a PreTrainedModel (its weights are copied)."""
        hf_config = read_config(source)
        shape = ModelShape.from_config(hf_config)
        dtype = getattr(torch, config.torch_dtype)
        num_blocks = config.num_kv_blocks or int(
            config.kv_cache_mb * 2**20 // kv_bytes_per_block(shape, config.block_size, dtype)
        )
        if num_blocks < 1:
            raise EngineConfigError(
                f"engine.kv_cache_mb={config.kv_cache_mb} holds no KV block of {config.block_size} tokens "
                f"({kv_bytes_per_block(shape, config.block_size, dtype)} bytes) for this model"
            )
        max_model_len = min(shape.max_position_embeddings, num_blocks * config.block_size)
        if config.max_model_len:
            max_model_len = min(max_model_len, config.max_model_len)
        shape.check_context(max_model_len)  # before the weights are read
        runner = ModelRunner(
            hf_config, read_state_dict(source), num_blocks=num_blocks, block_size=config.block_size,
            max_model_len=max_model_len, dtype=dtype, device=config.device, decode_kernel=config.decode_kernel,
            packed_linear=config.packed_linear, compile_decode=config.compile_decode,
            cuda_graphs=config.cuda_graphs and config.device == "cuda", max_num_seqs=config.max_num_seqs,
        )
        blocks = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        scheduler = Scheduler(
            blocks, max_num_seqs=config.max_num_seqs, max_num_batched_tokens=config.max_num_batched_tokens
        )
        return cls(runner, scheduler, max_model_len=max_model_len, eos_token_ids=eos_token_ids(hf_config, source), decode=decode)

    def validate(self, request: Request) -> None:
        validate_request(
            request, vocab_size=self.vocab_size, max_model_len=self.max_model_len,
            can_decode_text=self._decode is not None,
        )

    def add_request(self, request: Request) -> None:
        self.validate(request)
        assert request.request_id not in self._sequences, f"duplicate request id {request.request_id!r}"
        seq = Sequence(request.request_id, request.prompt_ids, request.sampling, self.scheduler.blocks.block_size)
        checker = StopChecker(
            request.sampling, prompt_len=seq.prompt_len, eos_token_ids=self._eos_token_ids,
            max_model_len=self.max_model_len, decode=self._decode,
        )
        self._sequences[request.request_id] = (seq, checker)
        self.scheduler.add(seq)

    def abort_request(self, request_id: str) -> Completion | None:
        if request_id not in self._sequences:
            return None
        return self._finish(self._sequences[request_id][0], FinishReason.ABORT)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def step(self) -> list[Completion]:
        chunks = self.scheduler.schedule()
        if not chunks:  # every running sequence was preempted; admission resumes next step
            return []
        sampled = self.runner.run(chunks)
        self.scheduler.on_step_done(chunks)
        self._prefill_tokens += sum(_prefill_tokens(c) for c in chunks if c.start < c.seq.prefill_end)
        finished = []
        for seq, token, logprob in sampled:
            seq.append(token, logprob, self.version)
            self._tokens_generated += 1
            reason = self._sequences[seq.request_id][1].check(seq.token_ids, seq.num_tokens - seq.prompt_len)
            if reason is not None:
                finished.append(self._finish(seq, reason))
        return finished

    def load_weights(self, named_arrays: Mapping[str, np.ndarray], version: int) -> None:
        self.runner.load_weights(named_arrays)
        self.scheduler.blocks.reset_prefix_cache()
        self.version = version

    def stats(self) -> EngineStats:
        blocks = self.scheduler.blocks
        return EngineStats(
            tokens_generated=self._tokens_generated,
            prefill_tokens_computed=self._prefill_tokens,
            prefix_cache_hit_tokens=self.scheduler.prefix_cache_hit_tokens,
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            kv_blocks_in_use=blocks.num_used_blocks,
            kv_blocks_total=blocks.num_blocks,
            weight_version=self.version,
        )

    def _finish(self, seq: Sequence, reason: FinishReason) -> Completion:
        seq.finish_reason = reason
        self.scheduler.finish(seq)
        self.runner.release(seq.request_id)
        del self._sequences[seq.request_id]
        return seq.completion()


def _prefill_tokens(chunk: Chunk) -> int:
    first_written = max(chunk.write_start, chunk.start)
    return max(0, min(chunk.end, chunk.seq.prefill_end) - first_written)
