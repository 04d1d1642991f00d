"""The loopback worker-node launcher's arguments and the loopback test of RAY_ADDRESS, without Ray.

Covered: actors/ray_node.py refuses an address off loopback (real machines use `ray start`)
and resources that are not a JSON map of amounts; `is_loopback_address` (actors/ray_setup.py)
tells which RAY_ADDRESS values need this process's Ray kept on loopback. Starting nodes is
tests/e2e/test_multinode*.py's.
"""
from __future__ import annotations

import pytest

from actors.ray_node import parse_args
from actors.ray_setup import is_loopback_address


def test_a_worker_node_joins_a_loopback_head_with_its_resources():
    args = parse_args(["--address", "127.0.0.1:6380", "--temp-dir", "/tmp/x/nodes/w1", "--resources", '{"rollout": 2}'])
    assert args.resources == {"rollout": 2} and args.num_cpus == 1 and args.object_store_mb == 100


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--address", "10.0.0.5:6379"], "this starts loopback nodes only"),
        (["--address", "127.0.0.1:6380", "--resources", "{rollout: 2}"], "is not JSON"),
        (["--address", "127.0.0.1:6380", "--resources", '{"rollout": -1}'], "must map names to amounts >= 0"),
        (["--address", "127.0.0.1:6380", "--resources", "[1]"], "must map names to amounts >= 0"),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args([*argv, "--temp-dir", "/tmp/x"])
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "address, loopback",
    [("127.0.0.1:6379", True), ("http://127.0.0.1:8265", True), ("localhost:6379", True), ("[::1]:6379", True),
     ("10.0.0.5:6379", False), ("http://head.example:8265", False), ("auto", False)],
)  # fmt: skip
def test_which_ray_addresses_are_on_loopback(address, loopback):
    assert is_loopback_address(address) is loopback
