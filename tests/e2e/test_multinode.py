"""`treadle train` on a three-node Ray cluster on loopback: a head with the learner, two worker nodes.

One cluster for the module (scripts/ray_cluster.sh): the head (1 CPU, custom resource
`learner`) and worker nodes w1 and w2 (1 CPU and `rollout: 1` each), each node with its own
temp dir, ports and object store. The runs place the learner by `train.learner_resources=
[learner=1]` and two rollout workers by `train.rollout_resources=[rollout=1]`, so one worker
runs on each worker node.

- Through `ray job submit`: episodes generated on both worker nodes travel to the head as
  Arrow batches and are trained by its learner (the ledger names the worker of every
  episode, each step's metrics the node of every actor); weights of later versions reach
  both nodes (each worker's Parquet log holds tokens of version >= 1); every process of
  every node listens on loopback only.
- Two data-parallel learners placed on two different nodes meet at rank 0's node (its
  address and a free port there) and train together.
- Node loss: after step 2 every process of the node holding rollout-0 gets `kill -9` at
  once and the node is started again. The learner keeps stepping on the other worker's
  groups while rollout-0 is away, its incomplete groups are dropped as "worker_died", Ray
  restarts it on the restarted node (a new Ray node by the same name), and the counters
  balance at every step with no episode trained twice. The run is then stopped with
  SIGINT, as the soak stops its runs.
"""
from __future__ import annotations

import re
import signal
import subprocess
import time

import pyarrow.compute as pc
import pytest

from reasoning.episode_table import read_threads
from tests.e2e.loopback_cluster import REPO, LoopbackCluster, assert_counted_once, finish, logged_steps, wait_for
from tests.e2e.processes import command_line

PLACED = ("train.num_rollout_workers=2", "train.rollout_resources=[rollout=1]", "train.learner_resources=[learner=1]")


@pytest.fixture(scope="module")
def cluster():
    cluster = LoopbackCluster(head_resources='{"learner": 1}')
    try:
        cluster.add_worker("w1", '{"rollout": 1}')
        cluster.add_worker("w2", '{"rollout": 1}')
        yield cluster
    finally:
        left = cluster.shutdown()
        assert not left, left


def node(name_and_id: str | None) -> str | None:
    """"w1/3fa2c1" -> "w1" (the node's name, without its id)."""
    return name_and_id.split("/")[0] if name_and_id else None


def submit(cluster: LoopbackCluster, submission_id: str, *train_args: str) -> subprocess.CompletedProcess:
    env = cluster.client_env
    for _ in range(30):  # the dashboard agent may take a while to come up on a busy machine
        result = subprocess.run(
            ["ray", "job", "submit", "--no-wait", "--working-dir", ".", "--submission-id", submission_id, "--",
             "treadle", "train", "configs/countdown-3-rl-apr.yaml", *train_args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if "No available agent" not in result.stderr:
            return result
        time.sleep(2)
    return result


def job_status(cluster: LoopbackCluster, submission_id: str) -> str:
    result = subprocess.run(["ray", "job", "status", submission_id], env=cluster.client_env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    return result.stdout.lower()


def test_episodes_from_worker_nodes_are_trained_by_the_head_nodes_learner(cluster, tmp_path):
    run_dir = tmp_path / "job"
    # One group at a time per worker, so that the worker that starts first cannot take every ticket.
    submitted = submit(cluster, "treadle-multinode", *PLACED, "train.steps=6", "train.groups_in_flight=1",
                       "train.batch_groups=2", "rl.group_size=2", "train.max_new_tokens=64", "train.eval_every=0",
                       f"run_dir={run_dir}")  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    wide, status = None, ""
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        actors = [pid for pid in cluster.pids() if re.match(r"ray::(RolloutActor|LearnerActor)", command_line(pid))]
        if wide is None and len(actors) >= 3:  # both workers and the learner are up: every process listens now
            wide = cluster.wide_sockets()
        status = job_status(cluster, "treadle-multinode")
        if any(word in status for word in ("succeeded", "failed", "stopped")):
            break
        time.sleep(2)
    logs = subprocess.run(["ray", "job", "logs", "treadle-multinode"], env=cluster.client_env, capture_output=True,
                          text=True, timeout=60).stdout  # fmt: skip
    assert "succeeded" in status, logs[-3000:]
    assert wide == [], f"a node listens beyond loopback: {wide}"

    steps, trained = assert_counted_once(run_dir, [1, 2, 3, 4, 5, 6], 24)
    for s in steps:
        assert node(s["nodes"]["learner-0"]) == "head"
        assert {node(s["nodes"]["rollout-0"]), node(s["nodes"]["rollout-1"])} == {"w1", "w2"}
    # Both worker nodes' episodes crossed to the head and were trained there.
    assert {e["worker"] for e in trained} == {"rollout-0", "rollout-1"}
    # Weights of later versions reached both nodes: each worker generated tokens with them.
    for worker in ("rollout-0", "rollout-1"):
        parts = sorted((run_dir / "rollouts" / worker).glob("part-*.parquet"))
        versions = [pc.max(pc.list_flatten(read_threads(p).column("versions"))).as_py() for p in parts]
        assert parts and max(versions) >= 1, (worker, versions)


def test_two_learners_on_two_nodes_meet_at_rank_0s_node(cluster, tmp_path):
    # No learner resources: one worker takes a worker node's CPU and `rollout`, and the two
    # learners the head's CPU and the other worker node's, so the gloo ranks are on two nodes.
    run_dir = tmp_path / "dp"
    driver = cluster.train(run_dir, "train.rollout_resources=[rollout=1]", "train.num_learners=2", "train.steps=2")
    finish(driver)
    steps, _ = assert_counted_once(run_dir, [1, 2], 8)
    assert len({node(steps[-1]["nodes"][f"learner-{rank}"]) for rank in (0, 1)}) == 2, steps[-1]["nodes"]


def test_losing_a_worker_node_loses_no_episode(cluster, tmp_path):
    run_dir = tmp_path / "rl"
    # A staleness bound of 1000 never stops a worker for admission, so rollout-0 always has
    # groups in flight to lose (with 2, or even 8, the buffer soon fills and the workers wait);
    # the run goes on until the test has seen the worker away and back, then stops it as a
    # user would (Ctrl-C).
    driver = cluster.train(run_dir, *PLACED, "train.steps=100000", "train.max_staleness=1000", "train.checkpoint_every=0")
    wait_for(lambda: len(logged_steps(run_dir)) >= 2 and None not in logged_steps(run_dir)[-1]["nodes"].values(),
             driver, "step 2 with both workers up")  # fmt: skip
    first = logged_steps(run_dir)[-1]["nodes"]["rollout-0"]
    lost = node(first)
    cluster.kill_worker(lost)  # the node's raylet, object store, agents and actors, at once
    cluster.add_worker(lost, '{"rollout": 1}')  # the machine comes back (as a new Ray node)

    def back() -> bool:  # rollout-0 was away for a step, then worked two on the restarted node
        where = [s["nodes"]["rollout-0"] for s in logged_steps(run_dir)]
        away = where.index(None) if None in where else len(where)
        return len([w for w in where[away:] if node(w) == lost and w != first]) >= 2

    wait_for(back, driver, "rollout-0 back on the restarted node")
    driver.send_signal(signal.SIGINT)
    try:
        driver.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        # Seen once in a full-suite run on 2 loaded cores: the driver had not ended 120 s after
        # Ctrl-C (cause not found yet). A user presses Ctrl-C again; the ledger checks below
        # are what this test is for.
        driver.send_signal(signal.SIGINT)
        try:
            driver.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.communicate()

    steps = logged_steps(run_dir)
    steps, trained = assert_counted_once(run_dir, list(range(1, len(steps) + 1)), 4 * len(steps))
    assert steps[-1]["worker_restarts"] == 1 and steps[-1]["restores"] == 0
    assert set(steps[-1]["dropped_by_reason"]) <= {"worker_died", "stale"}
    assert steps[-1]["dropped_by_reason"].get("worker_died", 0) > 0  # the groups it was generating
    # The learner went on while rollout-0 was away, on rollout-1's groups (and those buffered).
    away = [s for s in steps if s["nodes"]["rollout-0"] is None]
    assert away and all(node(s["nodes"]["rollout-1"]) != lost for s in away)
    assert {e["worker"] for e in trained} == {"rollout-0", "rollout-1"}
