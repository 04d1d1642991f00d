"""The rollout core on the real paged engine with a tiny model: groups, Arrow batches, versions."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from actors.rollout_core import RolloutCore, episode_meta, group_record_batch, ticket_problem
from actors.stream_buffer import EpisodeMeta
from learner.models import init_model
from learner.presets import ModelConfig
from reasoning.controllers.limits import ThreadLimits
from reasoning.countdown.problems import Problem
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.episode_table import THREAD_SCHEMA
from reasoning.tasks import make_task
from rollout import EngineConfig, SamplingParams, make_engine

PROBLEM = Problem("p7", (3, 12, 19), 34)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture()
def model(tokenizer):
    return init_model(ModelConfig(init_seed=5), tokenizer)


@pytest.fixture()
def core(model, tokenizer):
    engines = []

    def build(mode="sequential", max_tokens=24, ignore_eos=False):
        engine = make_engine("paged", model, tokenizer, EngineConfig())
        engines.append(engine)
        sampling = SamplingParams(max_tokens=max_tokens, temperature=1.0, ignore_eos=ignore_eos)
        return RolloutCore(
            engine, tokenizer, make_task("countdown"), mode=mode, group_size=4, sampling=sampling, limits=ThreadLimits()
        )

    yield build
    for engine in engines:
        engine.close()


def test_a_group_is_k_distinct_seeded_episodes_as_one_arrow_batch(core):
    rollout = core()
    episodes = asyncio.run(rollout.run_group(PROBLEM, "g0"))
    assert [e.episode_id for e in episodes] == ["g0/0", "g0/1", "g0/2", "g0/3"]
    outputs = [tuple(e.root.output_ids) for e in episodes]
    assert len(set(outputs)) > 1  # different seeds sample differently
    again = asyncio.run(rollout.run_group(PROBLEM, "g0"))
    assert [tuple(e.root.output_ids) for e in again] == outputs  # a re-issued group samples the same
    batch = group_record_batch(episodes)
    assert batch.schema == THREAD_SCHEMA and batch.num_rows == 4
    assert batch.column("episode_id").to_pylist() == ["g0/0", "g0/1", "g0/2", "g0/3"]
    meta = episode_meta(episodes[2], "g0", 2, admitted_version=0)
    verdict = episodes[2].verdict
    total = episodes[2].total_tokens
    assert meta == EpisodeMeta("g0", 2, total, 0, 0, verdict.reward, verdict.reason.value, critical_path_tokens=total)


def test_a_ticket_picks_its_problem_and_names_its_group(core):
    problems = [Problem("a", (1, 2, 3), 6), PROBLEM]
    assert ticket_problem(problems, 5) == (PROBLEM, "p7#5")
    group = asyncio.run(core().generate(problems, ticket_id=5, admitted_version=3))
    rows = group.batch.to_pylist()
    assert group.group_id == "p7#5" and [e for e, _ in group.metas] == [f"p7#5/{i}" for i in range(4)]
    assert {r["group_id"] for r in rows} == {"p7#5"} and {r["problem_id"] for r in rows} == {"p7"}
    assert {r["task"] for r in rows} == {"countdown"} and all(m.group_id == "p7#5" for _, m in group.metas)


def test_apr_mode_runs_thread_trees(core):
    episodes = asyncio.run(core(mode="apr").run_group(PROBLEM, "g1"))
    assert len(episodes) == 4 and all(e.mode == "apr" for e in episodes)
    assert group_record_batch(episodes).num_rows == sum(e.num_threads for e in episodes)


def test_weights_updated_mid_group_give_both_versions(core, model):
    rollout = core(max_tokens=300, ignore_eos=True)
    weights = {name: (p.detach().numpy() * 1.01).astype(np.float32) for name, p in model.named_parameters()}

    async def scenario():
        group = asyncio.create_task(rollout.run_group(PROBLEM, "g2"))
        while rollout.engine.stats().tokens_generated == 0:
            await asyncio.sleep(0.005)
        await rollout.load_weights(weights, version=1)
        return await group

    episodes = asyncio.run(scenario())
    metas = [episode_meta(e, "p7", i, admitted_version=0) for i, e in enumerate(episodes)]
    assert all(m.min_version == 0 and m.max_version == 1 for m in metas)


def test_unknown_mode_is_refused(core):
    with pytest.raises(ValueError, match="rollout mode 'vote'"):
        core(mode="vote")
