"""Where treadle's actors run on a Ray cluster: what each asks Ray for, and whether the cluster can hold them.

Plain Python (no Ray): the driver (actors/driver.py) passes `ActorKind.options()` to the
actors' `.options(...)` and the alive nodes of `ray.nodes()` to `check_cluster`.

- A rollout worker asks for 1 CPU, `train.rollout_gpus` of a GPU when engine.device is
  cuda, and the custom resources `train.rollout_resources`; a learner likewise
  (`train.learner_gpus` when rl.device is cuda, `train.learner_resources`). Ray makes the
  GPU it gives an actor device 0 of that actor's process, so `cuda` in the engine and in
  the learner is the GPU Ray chose; with fractions an engine and a learner share one.
- The buffer asks for nothing and runs on the driver's node (the head under `ray job
  submit`): the episodes it owns live in that node's object store, so losing any other
  node loses no buffered episode.

Why custom resources rather than a placement group: on a cluster, nodes have roles (these
machines generate, that one trains), and `ray start --resources '{"rollout": 4}'` says so
where the node is started. A rollout worker that Ray restarts after losing its node then
lands on any node that still has the resource, a surviving or a restarted one, with no
bookkeeping in treadle. A placement group reserves bundles on the nodes it picks at
creation; after a node loss its bundles must be rescheduled before Ray can restart an
actor in them, and PACK / SPREAD say nothing about which machines are meant for what.
What resources give up is gang scheduling (all learner ranks at once), which
`check_cluster` makes up for in part by refusing a cluster that cannot hold them all.

Checks, each a PlacementError naming the config key: `check_config` before Ray starts (a
cuda device with no GPU share; NCCL learners sharing a GPU, which NCCL refuses), and
`check_cluster` against the alive nodes' totals (each actor fits on some node; the sums of
CPUs, GPUs and custom resources fit the cluster). Not covered: bin packing. Both are
necessary conditions, not sufficient ones: when every actor fits somewhere but not all at
once, Ray leaves the ones that do not fit pending until a node frees or joins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.errors import UsageError

SHOWN_BUILTINS = ("CPU", "GPU")  # of Ray's own resources, the ones a message about placement shows


class PlacementError(UsageError):
    """The config asks for resources that this cluster (or any cluster) cannot give; names the key."""


@dataclass(frozen=True)
class ActorKind:
    """The rollout workers or the learners: how many, and what each asks Ray for."""

    name: str
    count: int
    count_key: str
    gpus: float
    gpus_key: str
    resources: dict[str, float] = field(default_factory=dict)
    resources_key: str = ""
    device_key: str = ""
    cpus: float = 1.0

    def request(self) -> dict[str, float]:
        """One actor's demand in Ray's resource names."""
        ask = {"CPU": self.cpus, **self.resources}
        if self.gpus:
            ask["GPU"] = self.gpus
        return ask

    def options(self) -> dict[str, Any]:
        """The `.options(...)` of one such actor (its CPU is in the actor's class)."""
        return {"num_gpus": self.gpus, "resources": dict(self.resources)}

    def key_for(self, resource: str) -> str:
        return {"CPU": self.count_key, "GPU": self.gpus_key}.get(resource, self.resources_key)


@dataclass(frozen=True)
class Node:
    name: str
    resources: dict[str, float]

    def describe(self) -> str:
        shown = {k: v for k, v in self.resources.items() if k in SHOWN_BUILTINS or _is_custom(k)}
        shown.setdefault("GPU", 0.0)
        return f"{self.name} ({', '.join(f'{k} {_amount(v)}' for k, v in sorted(shown.items()))})"


def actor_kinds(train: Any, rl_device: str, engine_device: str) -> tuple[ActorKind, ActorKind]:
    """(rollout workers, learners) of a TrainConfig; GPU shares count only for cuda devices."""
    rollout = ActorKind(
        "rollout worker", train.num_rollout_workers, "train.num_rollout_workers",
        train.rollout_gpus if engine_device == "cuda" else 0.0, "train.rollout_gpus",
        train.resources("rollout"), "train.rollout_resources", "engine.device",
    )  # fmt: skip
    learner = ActorKind(
        "learner", train.num_learners, "train.num_learners",
        train.learner_gpus if rl_device == "cuda" else 0.0, "train.learner_gpus",
        train.resources("learner"), "train.learner_resources", "rl.device",
    )  # fmt: skip
    return rollout, learner


def check_config(train: Any, rl_device: str, engine_device: str) -> None:
    """What no cluster could fix: a cuda actor without a GPU share, NCCL ranks on one GPU."""
    if engine_device == "cuda" and train.rollout_gpus == 0:
        raise PlacementError("train.rollout_gpus: engine.device is cuda, so each rollout worker needs a GPU "
                             "share (e.g. 0.5); with 0 Ray gives its process no GPU")  # fmt: skip
    if rl_device == "cuda" and train.learner_gpus == 0:
        raise PlacementError("train.learner_gpus: rl.device is cuda, so each learner needs a GPU share "
                             "(e.g. 0.5); with 0 Ray gives its process no GPU")  # fmt: skip
    if rl_device == "cuda" and train.num_learners > 1 and train.learner_gpus < 1:
        raise PlacementError(
            f"train.learner_gpus: {train.num_learners} learners on cuda form an NCCL group, which needs a GPU "
            f"of its own for each rank; {train.learner_gpus} would put two ranks on one GPU: use 1"
        )


def check_cluster(kinds: tuple[ActorKind, ...], nodes: list[Node], started_here: bool = False) -> None:
    """PlacementError unless every actor fits on some node and the sums fit the cluster.
    `started_here`: treadle started this Ray itself (its CPUs are train.num_cpus)."""
    cluster = "; ".join(node.describe() for node in nodes) or "no node"
    for kind in kinds:
        if kind.count and not any(_fits(kind.request(), node.resources) for node in nodes):
            raise PlacementError(_nowhere(kind, nodes, cluster))
    needed: dict[str, float] = {}
    for kind in kinds:
        for resource, amount in kind.request().items():
            needed[resource] = needed.get(resource, 0.0) + kind.count * amount
    for resource, amount in needed.items():
        have = sum(node.resources.get(resource, 0.0) for node in nodes)
        if amount > have + 1e-9:
            askers = [k for k in kinds if k.count and k.request().get(resource)]
            keys = " and ".join(dict.fromkeys(k.key_for(resource) for k in askers))
            parts = ", ".join(f"{k.count} {k.name}(s) x {_amount(k.request()[resource])}" for k in askers)
            hint = " (train.num_cpus: the Ray treadle starts itself)" if resource == "CPU" and started_here else ""
            raise PlacementError(f"{keys}: the actors ask for {_amount(amount)} {resource} in all ({parts}), but the "
                                 f"cluster has {_amount(have)}{hint}; its nodes: {cluster}")  # fmt: skip


def _nowhere(kind: ActorKind, nodes: list[Node], cluster: str) -> str:
    ask = kind.request()
    lacking = [r for r in ask if not any(node.resources.get(r, 0.0) >= ask[r] for node in nodes)]
    if lacking:  # custom resources first: they are what a user sets up per node
        resource = sorted(lacking, key=lambda r: r in SHOWN_BUILTINS)[0]
        advice = {
            "GPU": f"{kind.device_key} is cuda: add a node with GPUs, lower {kind.gpus_key}, or set "
                   f"{kind.device_key}=cpu",
            "CPU": f"no node has {_amount(ask['CPU'])} CPU",
        }.get(resource, f"start a node with `ray start --resources '{{\"{resource}\": N}}'` (scripts/ray_cluster.sh "
                        f"worker) or leave {kind.resources_key} empty")  # fmt: skip
        return (f"{kind.key_for(resource)}: each {kind.name} asks for {resource} {_amount(ask[resource])}, but no "
                f"node of the cluster has that much ({advice}); its nodes: {cluster}")  # fmt: skip
    return (f"{kind.resources_key or kind.gpus_key}: each {kind.name} asks for {_show(ask)} on one node, and no node "
            f"has all of it; its nodes: {cluster}")  # fmt: skip


def _fits(ask: dict[str, float], resources: dict[str, float]) -> bool:
    return all(resources.get(name, 0.0) >= amount for name, amount in ask.items())


def _is_custom(name: str) -> bool:
    return name not in ("memory", "object_store_memory", *SHOWN_BUILTINS) and ":" not in name


def _amount(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _show(ask: dict[str, float]) -> str:
    return ", ".join(f"{k} {_amount(v)}" for k, v in ask.items())
