"""Checkpoint manifests: a whole checkpoint loads, every kind of damage is named."""
from __future__ import annotations

import pytest

from learner.manifest import ManifestError, commit_directory, temporary_directory, verify_manifest


@pytest.fixture()
def checkpoint(tmp_path):
    tmp = temporary_directory(tmp_path / "step-1")
    (tmp / "learner.pt").write_bytes(b"weights" * 10)
    (tmp / "policy").mkdir()
    (tmp / "policy" / "model.safetensors").write_bytes(b"x" * 100)
    return commit_directory(tmp, tmp_path / "step-1", {"version": 1})


def test_a_committed_directory_verifies_and_leaves_no_temporary(checkpoint):
    manifest = verify_manifest(checkpoint)
    assert manifest["version"] == 1 and set(manifest["files"]) == {"learner.pt", "policy/model.safetensors"}
    assert [p.name for p in checkpoint.parent.iterdir()] == ["step-1"]


def test_recommitting_replaces_the_old_directory(checkpoint):
    tmp = temporary_directory(checkpoint)
    (tmp / "learner.pt").write_bytes(b"new")
    commit_directory(tmp, checkpoint)
    assert set(verify_manifest(checkpoint)["files"]) == {"learner.pt"}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "policy" / "model.safetensors").open("r+b").truncate(50), "model.safetensors: 50 bytes, the manifest says 100"),
        (lambda d: (d / "learner.pt").write_bytes(b"WEIGHTS" * 10), "learner.pt: checksum differs from the manifest"),
        (lambda d: (d / "learner.pt").unlink(), "learner.pt: listed in the manifest but missing"),
        (lambda d: (d / "stray.bin").write_bytes(b"?"), "files not in the manifest: stray.bin"),
        (lambda d: (d / "manifest.json").unlink(), "manifest.json: missing"),
        (lambda d: (d / "manifest.json").write_text("{"), "manifest.json: unreadable manifest"),
    ],
    ids=["truncated", "corrupt", "missing", "unlisted", "no-manifest", "bad-manifest"],
)  # fmt: skip
def test_damage_is_refused_with_the_file_named(checkpoint, damage, message):
    damage(checkpoint)
    with pytest.raises(ManifestError, match=message):
        verify_manifest(checkpoint)
