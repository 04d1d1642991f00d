"""The Ray actors: thin wrappers around the plain classes that do the work.

- `BufferActor` (num_cpus=0, async) wraps StreamBuffer (actors/stream_buffer.py); workers
  asking for a ticket and the driver asking for a batch wait in it (actors/waiting_buffer.py).
- `RolloutActor` (num_cpus=1, async, restarted by Ray if it dies) wraps RolloutCore (actors/rollout_core.py) around a
  paged engine; its `run` loop asks the buffer for a ticket, generates a group, appends
  the group's Arrow record batch to the worker's Parquet rollout log
  (actors/rollout_log.py), and hands it with its episodes' metadata to the buffer, which
  puts it into the object store (so the buffer owns it and it survives the worker). Weight updates arrive as a reference to a dict of numpy arrays, zero-copy.
- `LearnerActor` (num_cpus=1) wraps RLLearner (learner/rl_step.py): one rank of one or
  more data-parallel learners; with `model.lora` it trains adapters on the frozen policy
  (learner/lora.py) and saves them in peft's format beside the merged model.
Where each actor runs (node, GPUs) is decided by the driver (actors/placement.py); a
learner's `where` and a worker's `stats` tell. Ray makes the GPU it gives an actor device
0 of the actor's process, so the engine's and the learner's `cuda` is that GPU.
Episode handles in the buffer are `([ref], episode_id)`: the reference is wrapped in a
list so that Ray passes it along instead of resolving it.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import asdict
from typing import Any

import ray

from actors.idle_clock import IdleClock
from actors.progress import quiet_libraries
from actors.rollout_log import RolloutLog

ADMIT_WAIT_S = 1.0  # how long a worker's request for a ticket waits before it looks at `running` again


@ray.remote(num_cpus=0, enable_task_events=False)
class BufferActor:
    """An async actor: requests for a ticket or a batch wait in it (actors/waiting_buffer.py).

    Its calls (several per group) record no task events: the GCS kept every one of them,
    and on a long run that was the one part of the cluster whose memory kept growing."""

    def __init__(
        self, max_staleness: int, batch_size: int, group_size: int, drop_uniform_groups: bool = False,
        max_uniform_batches: int = 0,
    ):  # fmt: skip
        """The last two are DAPO's dynamic sampling (rl.dynamic_sampling, rl.dynamic_sampling_max_batches)."""
        from actors.stream_buffer import StreamBuffer
        from actors.waiting_buffer import WaitingBuffer

        self.buffer = StreamBuffer(
            max_staleness=max_staleness, batch_size=batch_size, group_size=group_size,
            drop_uniform_groups=drop_uniform_groups, max_uniform_batches=max_uniform_batches,
        )  # fmt: skip
        self.waiting = WaitingBuffer(self.buffer)
        self.group_bytes: dict[int, int] = {}  # ticket id -> bytes of the group's batch in this node's object store

    async def admit(self, worker_id: str, timeout_s: float):
        return await self.waiting.admit(worker_id, timeout_s)

    async def take_batch(self, learner_version: int, timeout_s: float):
        return await self.waiting.take_batch(learner_version, timeout_s)

    async def put_group(self, ticket, batch, metas: list) -> None:
        """A finished group: its Arrow batch goes into the object store from here, so the
        buffer actor owns it and the episodes outlive the worker that made them."""
        ref = ray.put(batch)
        await self.waiting.put(ticket, [(([ref], episode_id), meta) for episode_id, meta in metas])
        self.group_bytes[ticket.ticket_id] = batch.nbytes

    async def abort(self, ticket, reason: str) -> None:
        await self.waiting.abort(ticket, reason)

    async def abort_worker(self, worker_id: str, reason: str) -> int:
        return await self.waiting.abort_worker(worker_id, reason)

    async def set_version(self, version: int) -> None:
        await self.waiting.set_version(version)

    def metrics(self) -> dict:
        """The buffer's counters, and `buffered_bytes`: the Arrow bytes of the groups it holds
        (those put since it started: after a resume, not the groups a checkpoint restored)."""
        held = {ticket_id for ticket_id, _ in self.buffer.buffered_handles()}
        self.group_bytes = {t: n for t, n in self.group_bytes.items() if t in held}
        return {**self.buffer.metrics(), "buffered_bytes": sum(self.group_bytes.values())}

    async def checkpoint(self) -> tuple[dict, dict, list]:
        """The buffer's state, the episode id of each episode a checkpoint must keep (by
        (ticket_id, sample_index)), and their groups' Arrow batches, at one instant.

        The data, not the references: a reference sent to the driver here and again in a
        later batch crosses Ray's borrowing protocol twice through the same process, and on
        a multi-node run the object was freed under the learner reading it
        (ReferenceCountingAssertionError, "should not happen")."""
        state, handles = self.buffer.state_dict(), self.buffer.buffered_handles()
        refs = {id_list[0].hex(): id_list[0] for id_list, _ in handles.values()}
        batches = await asyncio.gather(*refs.values())  # this actor owns them: local reads
        return state, {key: episode_id for key, (_, episode_id) in handles.items()}, list(batches)

    async def load_state(self, state: dict, handles: dict) -> dict:
        await self.waiting.load_state(state, handles)
        return self.buffer.metrics()


@ray.remote(num_cpus=1, max_restarts=-1)
class RolloutActor:
    def __init__(self, worker_id: str, checkpoint: str, config: Any, log_dir: str | None = None):
        """Nothing here lives in the object store: Ray re-runs the constructor of a restarted
        worker with the same arguments, and an argument that had gone out of scope would
        fail the restart (Ray issue 53727). The problems come with `run`."""
        import torch

        from actors.rollout_core import RolloutCore
        from learner.lora_merge import AdapterMerger
        from rollout.checkpoint import read_state_dict
        from reasoning.controllers.limits import ThreadLimits
        from reasoning.tasks import make_task
        from rollout import SamplingParams, make_engine
        from rollout.tokenizer import load_tokenizer

        torch.set_num_threads(1)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        quiet_libraries()
        self.worker_id = worker_id
        self.problems: list = []
        self.config = config
        tokenizer = load_tokenizer(checkpoint)
        engine = make_engine(config.engine.backend, checkpoint, tokenizer, config.engine)
        train = config.train
        sampling = SamplingParams(max_tokens=train.max_new_tokens, temperature=train.temperature)
        limits = ThreadLimits(**{**vars(config.threads), "max_thread_tokens": train.max_new_tokens})
        self.task = make_task(config.task)
        adapters = AdapterMerger.from_state(read_state_dict(checkpoint)) if config.model.lora.enabled else None
        self.core = RolloutCore(
            engine, tokenizer, self.task, mode=train.mode, group_size=config.rl.group_size, sampling=sampling,
            limits=limits, adapters=adapters,
        )  # fmt: skip
        self.running = False
        self.groups_done = 0
        self.active_groups = 0
        self.idle = IdleClock()
        self.log = RolloutLog(log_dir) if log_dir else None

    def __repr__(self) -> str:  # Ray prefixes the actor's log lines with it
        return f"{self.worker_id} v{self.core.engine.version}" if hasattr(self, "core") else self.worker_id

    async def run(self, buffer, problems: list) -> int:
        """Generate groups until `stop`; returns how many groups were put. `problems` is
        `[ref]` to the problem list in the object store (awaited here: a blocking `ray.get`
        would stall the actor's event loop) or the list itself."""
        if problems and isinstance(problems[0], ray.ObjectRef):
            problems = await problems[0]
        self.problems = problems
        self.running = True
        try:
            await asyncio.gather(*(self._loop(buffer) for _ in range(self.config.train.groups_in_flight)))
        finally:
            if self.log is not None:
                self.log.close()
        return self.groups_done

    def stop(self) -> None:
        self.running = False

    async def evaluate(self, problems: list, trained_keys: list | None = None) -> dict:
        """Greedy accuracy on held-out problems, alongside the generation loop."""
        return await self.core.evaluate(problems, set(trained_keys) if trained_keys is not None else None)

    async def update_weights(self, named_arrays: dict, version: int) -> int:
        await self.core.load_weights(named_arrays, version)
        if self.log is not None:
            self.log.rotate()
        return version

    def stats(self) -> dict:
        """Groups finished, the fraction of time with no group being generated, engine
        counters, the task's scoring failures (a custom reward function's, by kind) and the
        worker's node."""
        failures = dict(getattr(self.task, "failures", {}))
        return {"groups": self.groups_done, "idle_ratio": self.idle.ratio(), "reward_failures": failures,
                "node_id": ray.get_runtime_context().get_node_id(), **asdict(self.core.engine.stats())}  # fmt: skip

    async def _loop(self, buffer) -> None:
        while self.running:
            ticket = await buffer.admit.remote(self.worker_id, ADMIT_WAIT_S)
            if ticket is None:
                continue
            self.active_groups += 1
            self.idle.set_busy(True)
            try:
                group = await self.core.generate(self.problems, ticket.ticket_id, ticket.admitted_version)
            finally:
                self.active_groups -= 1
                self.idle.set_busy(self.active_groups > 0)
            if self.log is not None:
                self.log.append(group.batch)
            await buffer.put_group.remote(ticket, group.batch, group.metas)
            self.groups_done += 1


@ray.remote(num_cpus=1)
class LearnerActor:
    """One learner rank. With world_size > 1 the ranks join a torch.distributed process
    group (gloo on CPU, NCCL on GPU) at `master_address`, so all of them must be created
    before any call returns; they then step in lockstep on the same episodes. Without a
    `master_address` (the ranks may be on different nodes, and only rank 0's node is
    where they can meet) the driver asks rank 0 for `rendezvous_address` and has every
    rank `join` it. `lora` (a LoRAConfig, rank 0 = off) trains adapters on the frozen `checkpoint`."""

    def __init__(
        self, checkpoint: str, rl_config: Any, rank: int = 0, world_size: int = 1, master_address: str = "",
        lora: Any = None,
    ):  # fmt: skip
        import torch

        from learner.distributed import learner_device

        torch.set_num_threads(1)
        quiet_libraries()
        learner_device(rl_config)  # fails now, naming rl.device, when cuda is asked for and not there
        self.checkpoint, self.rl_config, self.lora = checkpoint, rl_config, lora
        self.rank, self.world_size = rank, world_size
        if world_size == 1 or master_address:
            self.join(master_address)

    def rendezvous_address(self) -> str:
        """A free port on this rank's node (rank 0's), where the ranks' process group meets."""
        import socket

        ip = ray.util.get_node_ip_address()
        with socket.socket() as s:
            s.bind((ip, 0))
            return f"{ip}:{s.getsockname()[1]}"

    def join(self, master_address: str) -> int:
        """Join the ranks' process group at `master_address` (with several) and build the learner."""
        from learner.distributed import process_group_backend
        from learner.models import load_model
        from learner.rl_step import RLLearner
        from rollout.tokenizer import load_tokenizer

        if self.world_size > 1:
            import torch.distributed as dist

            # NCCL only among CUDA learners; learners on the CPU all-reduce through gloo.
            backend = process_group_backend(self.rl_config.device)
            dist.init_process_group(
                backend, init_method=f"tcp://{master_address}", rank=self.rank, world_size=self.world_size
            )
        self.tokenizer = load_tokenizer(self.checkpoint)
        model = load_model(self.checkpoint)
        self.learner = RLLearner(model, self.rl_config, rank=self.rank, world_size=self.world_size, lora=self.lora)
        return self.rank

    def __repr__(self) -> str:  # Ray prefixes the actor's log lines with it
        return f"learner-{self.learner.rank} v{self.learner.version}" if hasattr(self, "learner") else "learner"

    def ready(self) -> int:
        return self.learner.rank

    def where(self) -> dict:
        return _where()

    def step(self, handles: list) -> dict:
        """One update on the episodes behind `handles` (([ref], episode_id) pairs)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        refs = {id_list[0].hex(): id_list[0] for id_list, _ in handles}
        table = pa.Table.from_batches(ray.get(list(refs.values())))
        wanted = pa.array(sorted({episode_id for _, episode_id in handles}))
        rows = table.filter(pc.is_in(table.column("episode_id"), value_set=wanted))
        return self.learner.step(rows)

    def weights(self) -> dict | None:
        """The weights on rank 0, None on other ranks (which must still call it under FSDP2)."""
        return self.learner.weights()

    def save(self, directory: str, trained_keys: list | None = None) -> str:
        """The policy as a Hugging Face model directory with the keys of the problems it
        was trained on (rank 0 writes; every rank calls). With LoRA the model is the merged
        one and its adapter/ subdirectory holds the adapter in peft's format (with the
        tokenizer and those keys, so `treadle model merge-lora` rebuilds the same model)."""
        from learner.checkpoint import save_checkpoint
        from learner.lora import ADAPTER_SUBDIR

        model = self._whole_model()
        adapter = self._adapter_state()
        if model is not None:

            def write_adapter(tmp) -> None:
                self._save_adapter(adapter, os.path.join(tmp, ADAPTER_SUBDIR), trained_keys)

            save_checkpoint(directory, model, self.tokenizer, None, trained_keys, None if adapter is None else write_adapter)
        return directory

    def save_state(self, directory: str, trained_keys: list | None = None) -> int:
        """learner.pt (weights, optimizers, version, RNG) and policy/ (HF, with the keys of
        the problems it was trained on, so `treadle eval` reports accuracy_unseen) into a
        checkpoint being built; rank 0 writes, every rank calls (the states are gathered under
        FSDP2). With LoRA, learner.pt holds the adapters and their optimizer states, and
        policy/ the adapter in peft's format with the tokenizer (`treadle model merge-lora`
        makes it a model)."""
        import torch

        from actors.run_checkpoint import LEARNER, POLICY
        from learner.checkpoint import rng_state, write_trained_keys
        from learner.models import save_model

        state = self.learner.state_dict()
        adapter = self._adapter_state()
        model = self._whole_model() if adapter is None else None
        if self.learner.rank == 0:
            torch.save({"learner": state, "rng": rng_state()}, os.path.join(directory, LEARNER))
            if adapter is None:
                save_model(model, self.tokenizer, os.path.join(directory, POLICY))
                write_trained_keys(os.path.join(directory, POLICY), trained_keys)
            else:
                self._save_adapter(adapter, os.path.join(directory, POLICY), trained_keys)
        return self.learner.version

    def load_state(self, directory: str) -> int:
        import torch

        from actors.run_checkpoint import LEARNER
        from learner.checkpoint import set_rng_state

        state = torch.load(os.path.join(directory, LEARNER), weights_only=False)
        self.learner.load_state_dict(state["learner"])
        set_rng_state(state["rng"])
        return self.learner.version

    def _adapter_state(self) -> dict | None:
        """The LoRA adapters' tensors (gathered under FSDP2: every rank calls); None without LoRA."""
        if self.learner.lora is None:
            return None
        from learner.data_parallel import full_tensor
        from learner.lora import trainable_state

        return trainable_state(self.learner.peft, full_tensor)

    def _save_adapter(self, adapter: dict, directory: str, trained_keys: list | None = None) -> None:
        """The adapter in peft's format (naming this learner's checkpoint as its base), the
        tokenizer and the trained problems' keys: what `treadle model merge-lora` needs."""
        from learner.checkpoint import write_trained_keys
        from learner.lora import save_adapter

        save_adapter(self.learner.peft, adapter, directory, self.checkpoint)
        self.tokenizer.save_pretrained(directory)
        write_trained_keys(directory, trained_keys)

    def _whole_model(self):
        """The policy with whole parameters on rank 0 (gathered into a fresh copy under FSDP2;
        with LoRA the base checkpoint with the merged matrices), else None."""
        if not self.learner.sharded and self.learner.lora is None:
            return self.learner.model if self.learner.rank == 0 else None
        import torch

        from learner.models import load_model

        weights = self.learner.merged_weights() if self.learner.lora is not None else self.learner.weights()
        if weights is None:
            return None
        model = load_model(self.checkpoint).float()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
        return model


def _where() -> dict:
    """This actor's node and the GPUs Ray gave it (device 0, 1, ... of its process, in this order)."""
    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "gpu_ids": list(context.get_accelerator_ids().get("GPU", []))}
