"""One team of OpenMP threads per process (rollout/openmp.py), counted in /proc.

Each check runs in a fresh process with 2 torch threads: every thread that runs a
parallel op gets a team with one more thread, which `release_openmp_threads` ends. An
engine, after a request has finished and it has nothing left to do, leaves no team alive:
not the builder's, not the event loop's, not its own compute thread's.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PREAMBLE = """
import os, threading, torch
from rollout.openmp import release_openmp_threads
torch.set_num_threads(2)
big = torch.empty(1 << 20)  # (no fill: nothing runs in parallel before `before` is counted)

def native():  # threads that Python did not start: OpenMP's, and the libraries' own
    return len(os.listdir("/proc/self/task")) - threading.active_count()

def parallel_op():
    (big * 2).sum()  # a million elements: split over both threads
"""

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts threads in /proc")


def run(body: str) -> list[int]:
    script = textwrap.dedent(PREAMBLE) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [int(n) for n in result.stdout.split()]


def test_each_computing_thread_has_a_team_until_released():
    before, one_team, two_teams, released_one, released_both = run("""
        from concurrent.futures import ThreadPoolExecutor
        before = native()
        parallel_op()
        one_team = native()
        worker = ThreadPoolExecutor(1)
        worker.submit(parallel_op).result()
        two_teams = native()
        assert release_openmp_threads()
        released_one = native()
        worker.submit(release_openmp_threads).result()
        print(before, one_team, two_teams, released_one, native())
    """)
    assert (one_team, two_teams) == (before + 1, before + 2)
    assert (released_one, released_both) == (before + 1, before)


def test_an_idle_engine_leaves_no_team_alive():
    before, computing, idle = run("""
        import asyncio, time
        from learner.models import init_model
        from learner.presets import ModelConfig
        from reasoning.countdown.tokenizer import build_tokenizer
        from rollout import EngineConfig, SamplingParams, make_engine

        before = native()
        tokenizer = build_tokenizer()
        model = init_model(ModelConfig(preset="tiny", init_seed=0), tokenizer).eval()
        parallel_op()  # the builder's team
        engine = make_engine("paged", model, tokenizer, EngineConfig(num_kv_blocks=64))
        seen = []

        async def main():
            sampling = SamplingParams(max_tokens=64, temperature=1.0, ignore_eos=True)
            task = asyncio.ensure_future(engine.generate([5] * 40, sampling))
            while not task.done():  # while it generates: the compute thread's team
                await asyncio.sleep(0.005)
                seen.append(native())
            await task
            for _ in range(200):  # then the engine goes idle and releases it
                await asyncio.sleep(0.01)
                if native() == before:
                    break
            print(before, max(seen), native())

        asyncio.run(main())
        engine.close()
    """)
    assert computing == before + 1
    assert idle == before
