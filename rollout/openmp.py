"""Keep one team of OpenMP threads in the process, so torch's threads keep spinning.

torch's CPU ops run in parallel on OpenMP, and an OpenMP runtime keeps a team of worker
threads for EVERY thread that has run a parallel op. GNU libgomp (torch's on Linux)
lets a team's threads spin between parallel regions, which is what makes the short ops
of a small model's decode step fast; but once the process holds more OpenMP threads
than there are cores, counted over all teams, it cuts that spin to about a hundred
iterations and its threads go to sleep between ops. An engine computes on a thread of
its own (rollout/async_engine.py), while the model was built, and the decode step
compiled, on the caller's thread: two teams. On the project's 2-core machine that made
every op of a decode step wait for its threads to wake up, and a step took 1.7x as long
(5.3 against 3.1 ms, tiny preset, batch 64; and 2.7x for a loop of small matmuls).

`release_openmp_threads()` ends the calling thread's team (OpenMP 5's
`omp_pause_resource_all`); the thread gets a new one the next time it runs a parallel
op. The engine calls it on the thread that built it, on its event loop's thread, and
on its own compute thread whenever it has nothing left to do, so that the only team
that lives while an engine computes is that engine's own.

Where the runtime is not one that torch loaded, or is too old to pause, nothing happens.
"""
from __future__ import annotations

import ctypes
import functools
import os

_RUNTIMES = ("libgomp.so.1", "libomp.so", "libomp.dylib", "libiomp5.so")
"""GNU (torch's Linux builds), LLVM (torch's macOS builds), Intel."""
OMP_PAUSE_SOFT = 1
"""omp_pause_soft: release the threads; the runtime can start them again later."""


@functools.cache
def _pause_function():
    """`omp_pause_resource_all` of the OpenMP runtime already loaded (none is loaded here)."""
    for name in _RUNTIMES:
        try:
            library = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        pause = getattr(library, "omp_pause_resource_all", None)
        if pause is not None:
            pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
            return pause
    return None


def release_openmp_threads() -> bool:
    """End the calling thread's OpenMP team; False where there is no runtime to ask."""
    pause = _pause_function()
    return pause is not None and pause(OMP_PAUSE_SOFT) == 0
