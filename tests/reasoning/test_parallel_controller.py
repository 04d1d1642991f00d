"""The parallel-block controller with a scripted engine: shared prefixes, joins, metrics, hostile output.

Token counts in comments are worked out with the Countdown tokenizer: a tag, a number
below 1,000, a keyword (`Fail`) and any other character are one token each.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from reasoning.controllers.apr import RUNTIME_REASONS
from reasoning.controllers.limits import ThreadLimits
from reasoning.controllers.parallel import ParallelController
from reasoning.countdown.problems import Problem
from reasoning.countdown.tokenizer import build_tokenizer
from reasoning.tasks import make_task
from reward import Reason
from rollout.engine import SamplingParams
from tests.scripted_engine import ScriptedEngine

PROBLEM = Problem("p", (3, 12, 19), 34)
PROMPT = "34|3 12 19\n"
GREEDY = SamplingParams(max_tokens=256, temperature=0.0)
OUTLINE = "<parallel><thread>19+3=22|12 22</thread><thread>12*3=36|19 36</thread></parallel>"
ANSWER = "<answer>19+3+12</answer>"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def run(tokenizer, respond, limits=ThreadLimits(), delay_s=0.0, engine_class=ScriptedEngine, sampling=GREEDY):
    engine = engine_class(tokenizer, respond, delay_s)
    episode = asyncio.run(ParallelController(engine, tokenizer, make_task("countdown"), sampling, limits).run(PROBLEM))
    return episode, engine


def writes(script: str, after_join: str | None = None):
    """A respond in which every thread writes `script` (`after_join` once joined).

    A branch stops at each goal header's `</thread>` of its own outline and is continued;
    then the context ends inside an open outline, and it picks up where `script` left off.
    """

    def respond(context: str) -> str:
        open_at = context.rfind("<parallel>")
        if open_at >= 0 and "</parallel>" not in context[open_at:] and script.startswith(context[open_at:]):
            return script[len(context) - open_at :]
        if after_join is not None and context.endswith("<conclusion>"):
            return after_join
        return script

    return respond


def well_behaved(context: str) -> str:
    if context.endswith("<thread>19+3=22|12 22\n"):
        return "22+12=34|34\n" + ANSWER + "</thread>"  # ends with </thread>
    if context.endswith("<thread>12*3=36|19 36\n"):
        return "36-19=17|17\nFail"  # ends with EOS
    if context.endswith("<conclusion>"):
        return "19+3+12=34</conclusion>\n" + ANSWER
    return OUTLINE


def test_block_join_and_conclusion(tokenizer):
    episode, engine = run(tokenizer, well_behaved)
    assert episode.mode == "parallel" and episode.verdict.reason is Reason.CORRECT
    assert [(t.parent_id, t.depth, t.spawn_index) for t in episode.threads] == [(-1, 0, -1), (0, 1, 0), (0, 1, 0)]
    assert [t.finish_reason for t in episode.threads] == ["stop_token"] * 3
    assert episode.output == (
        OUTLINE
        + "<thread>19+3=22|12 22\n22+12=34|34\n" + ANSWER + "</thread>"
        + "<thread>12*3=36|19 36\n36-19=17|17\nFail</thread>"
        + "<conclusion>19+3+12=34</conclusion>\n" + ANSWER
    )  # fmt: skip
    assert len(engine.calls) == 4  # the outline, two branches, the conclusion


def test_branches_are_prompted_with_the_parents_full_prefix(tokenizer):
    episode, engine = run(tokenizer, well_behaved)
    root, first, second = episode.threads
    assert engine.calls[1] == PROMPT + OUTLINE + "<thread>19+3=22|12 22\n"
    assert engine.calls[2] == PROMPT + OUTLINE + "<thread>12*3=36|19 36\n"
    outline_ids = root.output_ids[:24]  # the outline is 24 tokens (below)
    assert first.prompt_ids == root.prompt_ids + outline_ids + tokenizer.encode("<thread>19+3=22|12 22\n")
    # The join reuses the branch's own ids: the first branch's whole sequence opens the root's.
    first_sequence = first.prompt_ids + first.output_ids
    assert (root.prompt_ids + root.output_ids)[: len(first_sequence)] == first_sequence


def test_the_join_is_observed_not_trained(tokenizer):
    episode, _ = run(tokenizer, well_behaved)
    root = episode.root
    # outline: <parallel> <thread> 19 + 3 = 22 | 12 ' ' 22 </thread> (x2, 11 each) </parallel> = 24
    # join: <thread>19+3=22|12 22\n (11) + body 22+12=34|34\n<answer>19+3+12</answer> (15) + </thread>
    #     + <thread>12*3=36|19 36\n (11) + body 36-19=17|17\nFail (9) + </thread> + <conclusion> = 49
    # conclusion: 19 + 3 + 12 = 34 </conclusion> \n <answer> 19 + 3 + 12 </answer> <eos> = 17
    assert root.trainable == [True] * 24 + [False] * 49 + [True] * 17
    assert root.versions == [0] * 24 + [-1] * 49 + [0] * 17
    assert root.logprobs[24:73] == [0.0] * 49
    inserted = [t for t, trained in zip(root.output_ids, root.trainable) if not trained]
    assert tokenizer.decode(inserted).endswith("Fail</thread><conclusion>")


def test_critical_path_and_totals_by_hand(tokenizer):
    episode, _ = run(tokenizer, well_behaved)
    root, first, second = episode.threads
    # root 24 + 17 = 41; first branch 22+12=34|34\n (8) + <answer>19+3+12</answer> (7) + </thread> = 16;
    # second branch 36-19=17|17\n (8) + Fail + <eos> = 10.
    assert (root.num_generated, first.num_generated, second.num_generated) == (41, 16, 10)
    assert episode.critical_path_tokens == 41 + 16  # the branches run side by side
    assert episode.total_tokens == 41 + 16 + 10
    assert episode.depth == 1 and episode.num_threads == 3


class _InFlightEngine(ScriptedEngine):
    """Records how many requests were in flight at once."""

    in_flight = max_in_flight = 0

    async def generate(self, prompt_ids, sampling, request_id=None):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await super().generate(prompt_ids, sampling, request_id)
        finally:
            self.in_flight -= 1


def test_branches_run_concurrently(tokenizer):
    _, engine = run(tokenizer, well_behaved, delay_s=0.01, engine_class=_InFlightEngine)
    assert engine.max_in_flight == 2


def nested(context: str) -> str:
    if context.endswith("<thread>left\n"):
        return "<parallel><thread>x</thread><thread>y</thread></parallel>"  # stops after each header
    if context.endswith("<parallel><thread>x</thread>"):
        return "<thread>y</thread></parallel>"
    if context.endswith("<thread>y</thread>"):
        return "</parallel>"
    if context.endswith("<thread>x\n") or context.endswith("<thread>y\n"):
        return context[-2].upper() + "</thread>"
    if context.endswith("<conclusion>"):  # the branch's own conclusion, then the root's
        return "XY</conclusion></thread>" if context.count("<conclusion>") == 1 else "done</conclusion>\n" + ANSWER
    return "<parallel><thread>left</thread></parallel>"


def test_a_branch_opens_a_nested_block(tokenizer):
    episode, engine = run(tokenizer, nested, ThreadLimits(max_depth=2))
    assert episode.verdict.reason is Reason.CORRECT
    root, left, x, y = episode.threads
    assert [(t.parent_id, t.depth) for t in episode.threads] == [(-1, 0), (0, 1), (1, 2), (1, 2)]
    assert len(engine.calls) == 8  # root 2, left 3 (one per outline header, then </parallel>) + 1, x 1, y 1
    assert x.prompt_ids == left.prompt_ids + left.output_ids[:8] + tokenizer.encode("<thread>x\n")
    assert "<thread>left\n<parallel><thread>x</thread><thread>y</thread></parallel>" in episode.output
    nested_join = "<thread>x\nX</thread><thread>y\nY</thread><conclusion>"
    assert nested_join + "XY</conclusion></thread><conclusion>" in episode.output
    # root: <parallel><thread>left</thread></parallel> (8) + done</conclusion>\n<answer>19+3+12</answer><eos> (14)
    # left: <parallel><thread>x</thread> (4) + <thread>y</thread> (3) + </parallel> + XY</conclusion></thread> (4)
    # x, y: one letter and </thread> (2 each)
    assert [t.num_generated for t in episode.threads] == [22, 12, 2, 2]
    assert episode.critical_path_tokens == 22 + 12 + 2 and episode.total_tokens == 38


@pytest.mark.parametrize(
    "respond",
    [
        lambda c: "<parallel><thread>1+1=2|2</parallel>",  # unbalanced
        lambda c: "</parallel>",  # close without open
        lambda c: "<parallel>" + "<thread>1+1=2|2</thread>" * 1000 + "</parallel>",  # 1,000 threads
    ],
)
def test_malformed_blocks_end_the_root_with_zero_reward(tokenizer, respond):
    long = SamplingParams(max_tokens=20_000, temperature=0.0)
    episode, _ = run(tokenizer, respond, ThreadLimits(max_thread_tokens=20_000, max_total_tokens=20_000), sampling=long)
    assert episode.root.finish_reason == "bad_markup" and len(episode.threads) == 1
    assert episode.verdict.reward == 0.0 and "bad_markup" in episode.verdict.detail


def test_a_branch_outline_of_1000_threads_is_refused_after_max_children_headers(tokenizer):
    huge = "<parallel>" + "<thread>x</thread>" * 1000 + "</parallel>"
    respond = writes(huge, after_join="</conclusion>\n" + ANSWER)
    root_respond = lambda c: "<parallel><thread>g</thread></parallel>" if c == PROMPT else respond(c)
    long = SamplingParams(max_tokens=20_000, temperature=0.0)
    episode, engine = run(tokenizer, root_respond, ThreadLimits(max_children=8, max_thread_tokens=20_000), sampling=long)
    branch = episode.threads[1]
    assert branch.finish_reason == "bad_markup" and len(episode.threads) == 2
    assert len(engine.calls) == 1 + 9 + 1  # the branch stopped at the 9th header
    assert branch.num_generated == 1 + 9 * 3  # <parallel> + nine <thread>x</thread>
    assert "<thread>g\nFail</thread><conclusion>" in episode.output
    assert episode.verdict.reason is Reason.CORRECT  # the root still concludes on its own


def test_unbounded_nesting_stops_at_max_depth(tokenizer):
    episode, _ = run(tokenizer, writes("<parallel><thread>a</thread></parallel>"), ThreadLimits(max_depth=3))
    assert episode.depth == 3 and len(episode.threads) <= 64
    deepest = [t for t in episode.threads if t.depth == 3]
    assert deepest and all(t.finish_reason == "too_deep" for t in deepest)
    assert episode.root.finish_reason in RUNTIME_REASONS and episode.verdict.reward == 0.0


def test_too_many_threads(tokenizer):
    block4 = "<parallel>" + "<thread>a</thread>" * 4 + "</parallel>"
    episode, _ = run(tokenizer, writes(block4), ThreadLimits(max_children=8, max_depth=5, max_threads=10))
    assert len(episode.threads) <= 10
    assert any(t.finish_reason == "too_many_threads" for t in episode.threads)
    assert episode.verdict.reward == 0.0


def test_a_branch_that_never_stops_is_cut_by_its_token_limit_and_joined_in_full(tokenizer):
    def respond(context):
        if context.endswith("<thread>g\n"):
            return "1+1=2|2\n" * 10_000  # runaway branch
        if context.endswith("<conclusion>"):
            return "</conclusion>\n" + ANSWER
        return "<parallel><thread>g</thread></parallel>"

    episode, _ = run(tokenizer, respond, ThreadLimits(max_thread_tokens=100, max_total_tokens=10_000))
    root, branch = episode.threads
    assert branch.finish_reason == "length" and branch.num_generated == 100
    # <thread> g \n (3) + the 100-token body + </thread> + <conclusion>
    assert root.trainable.count(False) == 3 + 100 + 2
    assert episode.verdict.reason is Reason.CORRECT


def test_the_episode_token_budget_is_shared(tokenizer):
    block3 = "<parallel>" + "<thread>a</thread>" * 3 + "</parallel>"
    respond = lambda c: block3 if c == PROMPT else "9" * 500  # a 500-digit run is 500 tokens
    episode, _ = run(tokenizer, respond, ThreadLimits(max_thread_tokens=400, max_total_tokens=300))
    # The outline takes 1 + 3 * 3 + 1 = 11 tokens. The first branch reserves its 256
    # (the sampling limit), the second the 33 left; the third waits for them, finds all
    # 300 used, and so does the root after the join.
    assert episode.total_tokens == 300
    assert [t.finish_reason for t in episode.threads] == ["budget_exhausted", "length", "length", "budget_exhausted"]
    assert [t.num_generated for t in episode.threads[1:]] == [256, 33, 0]
    assert episode.verdict.reward == 0.0 and "budget_exhausted" in episode.verdict.detail


def test_wall_clock_limit_aborts_the_root_in_flight(tokenizer):
    start = time.perf_counter()
    episode, engine = run(tokenizer, lambda c: ANSWER, ThreadLimits(max_wall_s=0.05), delay_s=5.0)
    assert time.perf_counter() - start < 2.0
    assert episode.root.finish_reason == "timeout" and engine.aborted == ["p/0/0"]
    assert episode.verdict.reward == 0.0


class _SlowBranchEngine(ScriptedEngine):
    """Answers the root at once and every branch (a context past `</parallel>`) after 5 s."""

    async def generate(self, prompt_ids, sampling, request_id=None):
        if "</parallel>" in self.tokenizer.decode(list(prompt_ids)):
            await asyncio.sleep(5.0)
        return await super().generate(prompt_ids, sampling, request_id)


def test_wall_clock_limit_aborts_branches_in_flight(tokenizer):
    start = time.perf_counter()
    episode, engine = run(tokenizer, well_behaved, ThreadLimits(max_wall_s=0.2), engine_class=_SlowBranchEngine)
    assert time.perf_counter() - start < 2.0
    assert sorted(engine.aborted) == ["p/1/0", "p/2/0"]  # the root sends nothing after the deadline
    assert [t.finish_reason for t in episode.threads] == ["timeout"] * 3
    assert episode.verdict.reward == 0.0 and "timeout" in episode.verdict.detail


def test_text_after_end_of_sequence_is_ignored(tokenizer):
    def respond(context):
        if context.endswith("<thread>g\n"):
            return "12+19=31|3 31<eos><parallel>"  # junk after the branch's EOS
        if context.endswith("<conclusion>"):
            return ANSWER + "<eos><answer>1</answer>"
        return "<parallel><thread>g</thread></parallel>"

    episode, _ = run(tokenizer, respond)
    assert episode.output.endswith("<thread>g\n12+19=31|3 31</thread><conclusion>" + ANSWER)
    assert episode.verdict.reason is Reason.CORRECT


def test_a_stray_thread_close_in_the_root_is_text(tokenizer):
    episode, engine = run(tokenizer, lambda c: "</thread>" + ANSWER)
    assert len(engine.calls) == 1 and episode.verdict.reason is Reason.CORRECT
