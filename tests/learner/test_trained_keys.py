"""The trained problems' keys a checkpoint records: compressed, deterministic, older plain
files still read, a damaged file named."""
from __future__ import annotations

import gzip
import json

import pytest

from learner.checkpoint import (
    LEGACY_TRAINED_PROBLEMS,
    TRAINED_PROBLEMS,
    load_trained_keys,
    read_trained_key_list,
    write_trained_keys,
)
from learner.models import CheckpointError

KEYS = [[[1, 3, 7], 22], ["math", "Ana buys 2 balls for 10 dollars each."]]


def test_keys_round_trip_as_tuples(tmp_path):
    write_trained_keys(tmp_path, KEYS)
    assert read_trained_key_list(tmp_path) == KEYS
    assert load_trained_keys(tmp_path) == {((1, 3, 7), 22), ("math", "Ana buys 2 balls for 10 dollars each.")}


def test_file_is_gzip_json_and_its_bytes_depend_on_the_keys_only(tmp_path):
    for name in "ab":
        (tmp_path / name).mkdir()
        write_trained_keys(tmp_path / name, KEYS)
    first, second = ((tmp_path / d / TRAINED_PROBLEMS).read_bytes() for d in "ab")
    assert first == second and first[4:8] == b"\0\0\0\0"  # gzip's MTIME field is 0: the manifest hash repeats
    assert json.loads(gzip.decompress(first)) == KEYS


def test_many_repetitive_keys_are_stored_small(tmp_path):
    keys = [["math", f"Tara buys {i % 9 + 2} mugs for {i % 17 + 3} dollars each and a kite."] for i in range(2_000)]
    write_trained_keys(tmp_path, keys)
    assert (tmp_path / TRAINED_PROBLEMS).stat().st_size * 5 < len(json.dumps(keys))


def test_an_older_checkpoints_plain_file_reads(tmp_path):
    (tmp_path / LEGACY_TRAINED_PROBLEMS).write_text(json.dumps(KEYS))
    assert load_trained_keys(tmp_path) == {((1, 3, 7), 22), ("math", "Ana buys 2 balls for 10 dollars each.")}


def test_the_compressed_file_wins_over_a_plain_one_beside_it(tmp_path):
    (tmp_path / LEGACY_TRAINED_PROBLEMS).write_text(json.dumps([[1, 2]]))
    write_trained_keys(tmp_path, KEYS)
    assert read_trained_key_list(tmp_path) == KEYS


def test_no_file_means_no_keys_and_none_writes_nothing(tmp_path):
    write_trained_keys(tmp_path, None)
    assert list(tmp_path.iterdir()) == [] and load_trained_keys(tmp_path) is None


def _flip_the_first_block_header(data: bytes) -> bytes:
    return data[:10] + bytes([data[10] ^ 0xFF]) + data[11:]  # deflate's first byte: zlib.error, not OSError


def _flip_a_body_byte(data: bytes) -> bytes:
    return data[:12] + bytes([data[12] ^ 0xFF]) + data[13:]  # the CRC check fails: BadGzipFile


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], _flip_the_first_block_header, _flip_a_body_byte, lambda b: gzip.compress(b"[[1, 2]")],
    ids=["truncated", "bad-block", "bad-crc", "bad-json"],
)
def test_a_damaged_file_is_named(tmp_path, damage):
    write_trained_keys(tmp_path, KEYS)
    path = tmp_path / TRAINED_PROBLEMS
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=f"{path}: unreadable trained-problem keys"):
        load_trained_keys(tmp_path)


@pytest.mark.parametrize("content", ["null", "3", '{"a": 1}', '[{"a": 1}]', '[[1, [2, {}]]]'])
def test_json_that_is_not_a_list_of_keys_is_named(tmp_path, content):
    (tmp_path / LEGACY_TRAINED_PROBLEMS).write_text(content)
    with pytest.raises(CheckpointError, match="not a JSON list of trained-problem keys"):
        load_trained_keys(tmp_path)
