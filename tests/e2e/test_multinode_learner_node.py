"""`treadle train` with the learner on a worker node: object-store pressure on the head, and the learner's node lost.

One loopback cluster for the module (scripts/ray_cluster.sh): the head (1 CPU, an 80 MiB
object store: the driver and the buffer, which owns the episodes) and worker node w1 (2
CPUs, `rollout: 1` and `learner: 1`).

- Object-store pressure. Ray will not start a node with a store under 75 MiB, and a run on
  this CPU makes far fewer episode bytes than that in a test's time, so the test shrinks
  the head's store instead: a detached actor on the head holds an array of all but
  256 KiB of it that it has read back (an object in use, which Ray can neither spill nor
  evict), leaving 256 KiB for the groups the buffer holds. The learner is slower than the
  worker, so the buffer deepens step by step (staleness bound 8) past twice that room;
  Ray spills the groups to disk (or, for objects it cannot spill, allocates them on
  disk), the learner on w1 reads them back, and the run finishes with nothing lost. The test prints which happened (the
  cluster's spill / restore figures) and fails if neither did.
- The learner's node lost: after the step-2 checkpoint, every process of w1 (the learner
  and the rollout worker) gets `kill -9` at once and w1 is started again. The driver sends
  the run back to its last checkpoint, as when a learner process dies: it waits for a node
  with room for the learner, rebuilds the actors there, undoes and redoes the steps after
  the checkpoint, and finishes with every step logged once and no episode trained twice.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.e2e.loopback_cluster import REPO, LoopbackCluster, assert_counted_once, finish, logged_steps, wait_for

PLACED = ("train.rollout_resources=[rollout=1]", "train.learner_resources=[learner=1]")
HEAD_STORE_MB, ROOM_KIB = 80, 256
BALLAST_KIB = HEAD_STORE_MB * 1024 - ROOM_KIB

BALLAST = """
import os, sys
from actors.ray_setup import keep_ray_on_loopback
keep_ray_on_loopback()
import numpy as np, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=os.environ["RAY_ADDRESS"], namespace="tests")

@ray.remote(num_cpus=0)
class Ballast:
    def __init__(self, kib):
        self.array = ray.get(ray.put(np.ones(kib * 1024, np.uint8)))  # read back: in use, so never spilled

    def size(self):
        return self.array.nbytes

head = ray.get_runtime_context().get_node_id()  # a driver joins the head node
if sys.argv[1] == "start":
    ballast = Ballast.options(name="ballast", lifetime="detached",
                              scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote(int(sys.argv[2]))
    ray.get(ballast.size.remote())
from ray._private.internal_api import memory_summary
print(memory_summary(stats_only=True))
if sys.argv[1] == "stop":
    ray.kill(ray.get_actor("ballast"))
"""


@pytest.fixture(scope="module")
def cluster():
    cluster = LoopbackCluster(head_store_mb=HEAD_STORE_MB)
    try:
        cluster.env["TREADLE_RAY_WORKER_CPUS"] = "2"
        cluster.add_worker("w1", '{"rollout": 1, "learner": 1}')
        yield cluster
    finally:
        left = cluster.shutdown()
        assert not left, left


def ballast(cluster: LoopbackCluster, *args: str) -> str:
    env = {**cluster.client_env, "RAY_ADDRESS": cluster.gcs_address}
    result = subprocess.run([sys.executable, "-c", BALLAST, *args], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def store_figures(summary: str) -> dict[str, float]:
    """From Ray's object store stats, summed over the nodes: MiB and objects in the stores,
    spilled and restored ("Spilled 7 MiB, 162 objects, ..."), and MiB allocated on disk
    because a store was full of objects in use."""
    found = re.search(r"^Plasma memory usage (\d+) MiB, (\d+) objects", summary, re.M)
    figures = dict(zip(("in_store_mib", "in_store_objects"), map(int, found.groups())))
    for what in ("Spilled", "Restored"):
        found = re.search(rf"^{what} (\d+) MiB, (\d+) objects", summary, re.M)
        figures[f"{what.lower()}_mib"], figures[f"{what.lower()}_objects"] = map(int, found.groups()) if found else (0, 0)
    found = re.search(r"^Plasma filesystem mmap usage: (\d+) MiB", summary, re.M)
    figures["fallback_mib"] = int(found.group(1)) if found else 0
    return figures


def test_groups_beyond_the_head_object_store_are_spilled_and_none_is_lost(cluster, tmp_path):
    before = store_figures(ballast(cluster, "start", str(BALLAST_KIB)))
    assert before["in_store_mib"] >= BALLAST_KIB // 1024 and before["fallback_mib"] == 0, before  # in the head's store
    run_dir = tmp_path / "rl"
    # The learner (about 3 s a step here) is slower than the worker, so the buffer deepens
    # by about 16 episodes (90 KB) a step, up to the staleness bound's 9 batches.
    driver = cluster.train(run_dir, *PLACED, "train.steps=10", "train.max_staleness=8", "rl.group_size=8",
                           "train.batch_groups=4", "train.max_new_tokens=256", "train.checkpoint_every=0")  # fmt: skip
    finish(driver)
    figures = store_figures(ballast(cluster, "stop"))

    steps, _ = assert_counted_once(run_dir, list(range(1, 11)), 10 * 32)
    peak = max(s["buffered_bytes"] for s in steps)
    spilled, on_disk = figures["spilled_objects"] - before["spilled_objects"], figures["fallback_mib"]
    outcome = "spilled" if spilled else ("allocated on disk" if on_disk else "neither")
    print(json.dumps({"buffered_bytes_peak": peak, "room_bytes": ROOM_KIB * 1024, "outcome": outcome, "before": before,
                      "after": figures}))  # fmt: skip
    assert peak > 2 * ROOM_KIB * 1024, peak  # the buffer held more than the head's store had room for
    assert outcome != "neither", figures
    assert set(steps[-1]["dropped_by_reason"]) <= {"stale"}


def test_losing_the_learners_node_sends_the_run_back_to_its_checkpoint(cluster, tmp_path):
    run_dir = tmp_path / "rl"
    driver = cluster.train(run_dir, *PLACED, "train.steps=6", "train.checkpoint_every=2")
    committed = run_dir / "checkpoints" / "step-2" / "manifest.json"
    wait_for(lambda: committed.is_file() and len(logged_steps(run_dir)) >= 3, driver, "step 3")
    cluster.kill_worker("w1")  # the learner and the rollout worker, with their node
    cluster.add_worker("w1", '{"rollout": 1, "learner": 1}')
    err = finish(driver)

    assert "going on from" in err and "step-2" in err
    steps, _ = assert_counted_once(run_dir, [1, 2, 3, 4, 5, 6], 24)  # the undone steps redone, once each in the log
    # One return at least: a second when the rebuild raced Ray's notice that the old w1 was gone.
    assert steps[-1]["restores"] >= 1
    assert steps[0]["nodes"]["learner-0"] != steps[-1]["nodes"]["learner-0"]  # a new node (by the same name)
