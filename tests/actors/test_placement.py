"""Placement without Ray: what each actor asks for, the config's GPU rules, and the cluster check.

Covered: train.rollout_resources / train.learner_resources parsing (each mistake names its
key), GPU shares only for cuda devices, a cuda device without a share, NCCL ranks sharing a
GPU, an actor that fits on no node (custom resource, GPU, CPU), sums beyond the cluster, and
clusters that hold the run (fractional GPUs shared by an engine and a learner; learners and
workers on different nodes). Ray's own scheduling is exercised by tests/e2e/test_multinode*.py.
"""
from __future__ import annotations

import pytest

from actors.placement import Node, PlacementError, actor_kinds, check_cluster, check_config
from configs.experiment import load_config
from configs.typed import ConfigError

CONFIG = "configs/countdown-3-rl-apr.yaml"


def kinds(*overrides: str, rl_device: str = "cpu", engine_device: str = "cpu"):
    return actor_kinds(load_config(CONFIG, list(overrides)).train, rl_device, engine_device)


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(PlacementError) as e:
        call(*args, **kwargs)
    return str(e.value)


def test_resources_parse_into_ray_requests():
    rollout, learner = kinds("train.rollout_resources=[rollout=1, big_memory=0.5]", "train.learner_resources=[trainer=2]",
                             "train.num_rollout_workers=3")  # fmt: skip
    assert rollout.request() == {"CPU": 1.0, "rollout": 1.0, "big_memory": 0.5} and rollout.count == 3
    assert rollout.options() == {"num_gpus": 0.0, "resources": {"rollout": 1.0, "big_memory": 0.5}}
    assert learner.request() == {"CPU": 1.0, "trainer": 2.0}
    assert kinds()[0].options() == {"num_gpus": 0.0, "resources": {}}


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.rollout_resources=[rollout]", "train.rollout_resources: expected NAME=AMOUNT"),
        ("train.rollout_resources=[GPU=1]", "train.rollout_resources: GPU is Ray's own resource"),
        ("train.learner_resources=[CPU=2]", "train.learner_resources: CPU is Ray's own resource"),
        ("train.learner_resources=[a=1, a=2]", "train.learner_resources: names a twice"),
        ("train.rollout_resources=[x=0]", "train.rollout_resources: x: the amount must be a number in (0, 1e6]"),
        ("train.rollout_resources=[x=lots]", "train.rollout_resources: x: the amount must be a number"),
        ("train.rollout_resources=[x=0.00001]", "train.rollout_resources: x: Ray counts resources in steps of 0.0001"),
        ("train.rollout_resources=[node:1.2.3.4=1]", "train.rollout_resources: 'node:1.2.3.4' is not a resource name"),
        ("train.learner_gpus=1.5", "train.learner_gpus: Ray gives an actor a fraction of one GPU or whole GPUs"),
        ("train.rollout_resources=rollout=1", "train.rollout_resources: expected a list"),
    ],
)
def test_each_resource_mistake_names_its_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(CONFIG, [override])
    assert message in str(e.value)


def test_gpu_shares_count_only_for_cuda_devices():
    rollout, learner = kinds("train.rollout_gpus=0.25", "train.learner_gpus=0.75")
    assert rollout.gpus == learner.gpus == 0.0 and "GPU" not in rollout.request()
    rollout, learner = kinds("train.rollout_gpus=0.25", "train.learner_gpus=0.75", rl_device="cuda", engine_device="cuda")
    assert rollout.request()["GPU"] == 0.25 and learner.options()["num_gpus"] == 0.75


def test_cuda_without_a_gpu_share_and_nccl_ranks_sharing_a_gpu_are_refused():
    def check(*overrides: str, rl_device: str = "cpu", engine_device: str = "cpu") -> None:
        check_config(load_config(CONFIG, list(overrides)).train, rl_device, engine_device)

    message = refusal(check, "train.rollout_gpus=0", engine_device="cuda")
    assert message.startswith("train.rollout_gpus: engine.device is cuda")
    assert refusal(check, "train.learner_gpus=0", rl_device="cuda").startswith("train.learner_gpus: rl.device is cuda")
    message = refusal(check, "train.num_learners=2", "train.learner_gpus=0.5", rl_device="cuda")
    assert message.startswith("train.learner_gpus: 2 learners on cuda form an NCCL group") and "use 1" in message
    check("train.num_learners=2", "train.learner_gpus=1", rl_device="cuda")  # a GPU each
    check("train.num_learners=2", "train.learner_gpus=0.5")  # gloo on the CPU: no GPU asked for
    check("train.rollout_gpus=0", "train.learner_gpus=0")  # the CPU needs no share


HEAD = Node("head", {"CPU": 2.0, "memory": 8e9, "object_store_memory": 1e9, "node:127.0.0.1": 1.0, "learner": 1.0})
W1 = Node("w1", {"CPU": 1.0, "rollout": 1.0, "node:127.0.0.1": 1.0})
W2 = Node("w2", {"CPU": 1.0, "rollout": 1.0})
GPU_NODE = Node("g", {"CPU": 8.0, "GPU": 1.0})


def test_a_cluster_that_holds_the_run_passes():
    check_cluster(kinds(), [Node("local", {"CPU": 2.0})], started_here=True)  # one worker and one learner
    placed = kinds("train.num_rollout_workers=2", "train.rollout_resources=[rollout=1]",
                   "train.learner_resources=[learner=1]")
    check_cluster(placed, [HEAD, W1, W2])
    # An engine and a learner sharing one GPU (the default 0.5 each).
    check_cluster(kinds(rl_device="cuda", engine_device="cuda"), [GPU_NODE])


def test_a_custom_resource_no_node_has_is_refused_naming_the_key():
    message = refusal(check_cluster, kinds("train.rollout_resources=[rollout=1]"), [Node("local", {"CPU": 2.0})], True)
    assert message.startswith("train.rollout_resources: each rollout worker asks for rollout 1, but no node")
    assert "ray start --resources '{\"rollout\": N}'" in message and "local (CPU 2, GPU 0)" in message
    # More than any one node has.
    message = refusal(check_cluster, kinds("train.learner_resources=[learner=2]"), [HEAD, W1])
    assert message.startswith("train.learner_resources: each learner asks for learner 2")


def test_gpus_the_cluster_does_not_have_are_refused_naming_the_key():
    message = refusal(check_cluster, kinds(engine_device="cuda"), [HEAD, W1])
    assert message.startswith("train.rollout_gpus: each rollout worker asks for GPU 0.5, but no node")
    assert "engine.device is cuda" in message and "head (CPU 2, GPU 0, learner 1)" in message
    small = Node("small", {"CPU": 1.0, "GPU": 0.5})
    message = refusal(check_cluster, kinds("train.learner_gpus=1", rl_device="cuda"), [HEAD, small])
    assert message.startswith("train.learner_gpus: each learner asks for GPU 1") and "rl.device is cuda" in message
    # Each fits, the sum does not: 2 workers x 0.5 + a learner x 0.5 on one GPU.
    two = kinds("train.num_rollout_workers=2", rl_device="cuda", engine_device="cuda")
    message = refusal(check_cluster, two, [GPU_NODE])
    assert message.startswith("train.rollout_gpus and train.learner_gpus: the actors ask for 1.5 GPU in all")
    assert "2 rollout worker(s) x 0.5, 1 learner(s) x 0.5" in message and "cluster has 1" in message
    check_cluster(two, [GPU_NODE, Node("g2", {"CPU": 2.0, "GPU": 1.0})])  # with a second GPU they fit


def test_more_actors_than_cpus_is_refused_naming_the_counts():
    message = refusal(check_cluster, kinds("train.num_rollout_workers=2"), [Node("local", {"CPU": 2.0})], True)
    assert message.startswith("train.num_rollout_workers and train.num_learners: the actors ask for 3 CPU in all")
    assert "train.num_cpus" in message  # the Ray treadle started itself: its size is a setting
    assert "train.num_cpus" not in refusal(check_cluster, kinds("train.num_rollout_workers=2"), [Node("c", {"CPU": 2.0})])


def test_resources_that_no_single_node_has_together_are_refused():
    # Some node has the GPU and some node has `rollout`, but no node has both.
    message = refusal(check_cluster, kinds("train.rollout_resources=[rollout=1]", engine_device="cuda"), [W1, GPU_NODE])
    assert message.startswith("train.rollout_resources: each rollout worker asks for CPU 1, rollout 1, GPU 0.5 on one node")
