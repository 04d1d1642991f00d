"""Budget curves and episode metrics, worked by hand on hand-built episodes."""
from __future__ import annotations

from reasoning.countdown.problems import Problem
from reasoning.episode import Episode, Thread
from reasoning.eval.curves import accuracy_curve, budget_curves, doubling_grid, longest_thread
from reasoning.eval.harness import summarize
from reward import Reason, Verdict


def thread(tid, parent, spawn, prompt, generated, inserted=0, depth=0):
    t = Thread(tid, parent, depth, spawn, [1] * prompt)
    t.add_generated([5] * generated, [0.0] * generated, [0] * generated)
    t.add_inserted([6] * inserted)
    return t


def episode(threads, correct, latency=1.0, key=(1, 2)):
    verdict = Verdict.correct() if correct else Verdict.fail(Reason.WRONG_VALUE)
    return Episode("e", Problem("p", key, 3), "apr", threads, "", verdict, latency)


def test_critical_path_by_hand():
    # root generates 10 + 5 (after its join); spawn 0 runs children of 20 and 30 tokens,
    # spawn 1 one child of 7; the 30-token child itself spawned one grandchild of 4.
    threads = [
        thread(0, -1, -1, 6, 15, inserted=9),
        thread(1, 0, 0, 8, 20, depth=1),
        thread(2, 0, 0, 8, 30, depth=1),
        thread(3, 0, 1, 8, 7, depth=1),
        thread(4, 2, 0, 10, 4, depth=2),
    ]
    e = episode(threads, True)
    assert e.critical_path_tokens == 15 + max(20, 30 + 4) + 7  # = 56
    assert e.total_tokens == 15 + 20 + 30 + 7 + 4  # = 76; inserted tokens are not generated
    assert e.depth == 2 and e.num_threads == 5
    assert longest_thread(e) == 8 + 30  # child 2; the root holds 6 + 15 + 9 (inserted count too)


def test_curves_by_hand():
    a = episode([thread(0, -1, -1, 4, 10)], True)  # longest thread 14, 10 tokens
    b = episode([thread(0, -1, -1, 4, 60)], True)  # 64, 60 tokens
    c = episode([thread(0, -1, -1, 4, 5)], False)  # wrong: never counts
    assert doubling_grid(64, 16) == [16, 32, 64]
    assert doubling_grid(100, 16) == [16, 32, 64, 100]
    assert accuracy_curve([a, b, c], longest_thread, [16, 32, 64]) == [[16, 1 / 3], [32, 1 / 3], [64, 2 / 3]]
    curves = budget_curves([a, b, c])
    assert curves["accuracy_vs_total_tokens"][-1] == [60, 2 / 3]


def test_summary_counts_unseen_problems():
    seen, unseen = episode([thread(0, -1, -1, 4, 10)], True, key=(2, 1)), episode([thread(0, -1, -1, 4, 10)], False, key=(5, 6))
    summary = summarize([seen, unseen], trained_keys={((1, 2), 3)})
    assert summary["accuracy"] == 0.5 and (summary["num_unseen"], summary["accuracy_unseen"]) == (1, 0.0)
    assert summarize([seen], None)["num_unseen"] is None


def test_acceleration_ratio_is_total_over_critical_path_tokens():
    sequential = episode([thread(0, -1, -1, 4, 40)], True)  # 40 total, 40 critical
    # 10 before the fork, branches of 20 and 30 side by side, 5 after: 65 total, 45 critical.
    forked = episode([thread(0, -1, -1, 4, 15, inserted=50), thread(1, 0, 0, 14, 20, 1), thread(2, 0, 0, 14, 30, 1)], True)
    assert summarize([sequential], None)["acceleration_ratio"] == 1.0
    assert summarize([sequential, forked], None)["acceleration_ratio"] == (40 + 65) / (40 + 45)
