"""Builds the CPU kernels (every *.c here, into one shared library) and loads them with ctypes;
the ctypes argument types and the checks that every wrapper shares.

The library is compiled on first use with `cc -O3 -march=native -fopenmp` into the
user's cache (`$TREADLE_KERNEL_CACHE`, else `$XDG_CACHE_HOME/treadle/kernels`, else
`~/.cache/treadle/kernels`), under a name that hashes the sources, the flags, the
compiler's version and the CPU's flags, and is moved into place atomically, so that
processes building it at once (rollout workers) never load half a file. It takes about
a second. It links the OpenMP runtime by its soname, so it shares the one torch loaded.

`available()` says why the kernels cannot be used where they cannot (no C compiler, a
failed build); the engine then warns once and keeps to torch.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-std=c11", "-fPIC", "-shared")


class KernelUnavailable(RuntimeError):
    """The CPU kernels cannot be built or loaded here; the message says why."""


def cache_dir() -> Path:
    override = os.environ.get("TREADLE_KERNEL_CACHE")
    if override:
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "treadle" / "kernels"


def sources(directory: Path = HERE) -> list[Path]:
    return sorted(directory.glob("*.c"))


def _compiler() -> str:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise KernelUnavailable("no C compiler (cc or gcc, or $CC) on PATH")
    return compiler


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


def build(directory: Path = HERE) -> Path:
    """The shared library of `directory`'s C files, compiled unless the cache has it."""
    compiler = _compiler()
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise KernelUnavailable(f"C compiler {compiler!r} does not run: {e}") from e
    files = sources(directory)
    headers = sorted(directory.glob("*.h"))
    key = hashlib.sha256()
    for part in [*(p.read_bytes() for p in files + headers), " ".join(FLAGS).encode(), version.encode(), _cpu_flags().encode()]:
        key.update(part + b"\0")
    target = cache_dir() / f"treadle_cpu_kernels-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        command = [compiler, *FLAGS, f"-I{directory}", *map(str, files), "-o", str(built)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            names = ", ".join(p.name for p in files)
            raise KernelUnavailable(f"{compiler} could not build {names}: {result.stderr.strip()[:2000]}")
        os.replace(built, target)
    return target


@functools.cache
def library() -> ctypes.CDLL:
    """The loaded library (built on the first call); raises KernelUnavailable."""
    try:
        path = build()
    except KernelUnavailable:
        raise
    except (OSError, RuntimeError) as e:  # an unwritable cache, no home directory, ...
        raise KernelUnavailable(f"could not build the kernels into the cache ({type(e).__name__}: {e})") from e
    try:
        return ctypes.CDLL(str(path))
    except OSError as e:
        raise KernelUnavailable(f"could not load the built kernels: {e}") from e


def available() -> str | None:
    """None when the kernels can be used, else why not."""
    try:
        library()
    except KernelUnavailable as e:
        return str(e)
    return None


def function(name: str, *argtypes, restype=None):
    """A C function of the library with its argument types set."""
    f = getattr(library(), name)
    f.argtypes, f.restype = list(argtypes), restype
    return f


POINTER, SIZE, FLOAT, INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int


def require(condition: bool, message: str) -> None:
    """The kernels' checked wrappers refuse an argument with ValueError("CPU kernel: ...")."""
    if not condition:
        raise ValueError(f"CPU kernel: {message}")


def check_float32(**tensors) -> None:
    """What every kernel's checked wrapper asks of its float arguments."""
    for name, tensor in tensors.items():
        require(tensor.dtype == torch.float32 and tensor.device.type == "cpu",
                f"{name} must be a float32 CPU tensor, got {tensor.dtype} on {tensor.device}")
