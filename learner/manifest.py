"""Checkpoint manifests: the size and SHA-256 of every file, checked before anything loads.

`write_manifest(directory)` records every file under `directory` (except the manifest
itself) in `manifest.json`; `verify_manifest(directory)` refuses a directory whose files
are missing, truncated, altered or unlisted, naming the file. Writers build a checkpoint
under a temporary name, write the manifest last and rename the directory into place, so
a reader sees either a whole checkpoint or none (`commit_directory`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = 1


class ManifestError(ValueError):
    """A checkpoint that fails its manifest; the message names the directory and file."""


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    directory = Path(directory)
    files = {
        path.relative_to(directory).as_posix(): {"bytes": path.stat().st_size, "sha256": file_digest(path)}
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    manifest = {"format": FORMAT, **(extra or {}), "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def verify_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of `directory` after checking every file it lists; raises ManifestError."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{path}: missing; {directory} is not a complete checkpoint")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ManifestError(f"{path}: unreadable manifest ({e})") from None
    for name, expected in files.items():
        file = directory / name
        if not file.is_file():
            raise ManifestError(f"{file}: listed in the manifest but missing")
        size = file.stat().st_size
        if size != expected["bytes"]:
            raise ManifestError(f"{file}: {size} bytes, the manifest says {expected['bytes']} (truncated or altered)")
        if file_digest(file) != expected["sha256"]:
            raise ManifestError(f"{file}: checksum differs from the manifest (corrupt)")
    extra = sorted(
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != MANIFEST and p.relative_to(directory).as_posix() not in files
    )
    if extra:
        raise ManifestError(f"{directory}: files not in the manifest: {', '.join(extra)}")
    return manifest


def temporary_directory(directory: str | Path) -> Path:
    """A fresh sibling `.NAME.tmp` to build `directory` in."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit_directory(tmp: Path, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `tmp`'s manifest, then move it to `directory` (replacing an older one)."""
    directory = Path(directory)
    write_manifest(tmp, extra)
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old)
    else:
        os.replace(tmp, directory)
    return directory
