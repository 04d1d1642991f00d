"""APR's budget curves from one evaluation: accuracy under a context window, a token
budget and a latency budget.

- context window W: a problem counts as solved only if it was solved and every thread
  (prompt + output) fits in W tokens - APR's point being that threads split the context;
- total tokens B: solved with at most B tokens generated over all threads;
- latency L: solved with at most L critical-path tokens (the longest chain of sequential
  generation, the wall time on an engine that runs siblings in parallel), and, measured,
  within L seconds of wall time.
Each curve is a list of (budget, accuracy) points over a doubling grid.
"""
from __future__ import annotations

from typing import Any, Callable

from reasoning.episode import Episode


def doubling_grid(largest: float, smallest: float) -> list[float]:
    grid, value = [], smallest
    while value < largest:
        grid.append(value)
        value *= 2
    grid.append(largest)
    return grid


def longest_thread(episode: Episode) -> int:
    return max(len(t.prompt_ids) + len(t.output_ids) for t in episode.threads)


def accuracy_curve(episodes: list[Episode], cost: Callable[[Episode], float], grid: list[float]) -> list[list[float]]:
    n = len(episodes)
    solved = [cost(e) for e in episodes if e.verdict.reward == 1.0]
    return [[budget, sum(c <= budget for c in solved) / n] for budget in grid]


def budget_curves(episodes: list[Episode]) -> dict[str, Any]:
    assert episodes
    context = max(longest_thread(e) for e in episodes)
    tokens = max(e.total_tokens for e in episodes)
    path = max(e.critical_path_tokens for e in episodes)
    seconds = max(e.latency_s for e in episodes)
    return {
        "accuracy_vs_context_window": accuracy_curve(episodes, longest_thread, doubling_grid(context, 16)),
        "accuracy_vs_total_tokens": accuracy_curve(episodes, lambda e: e.total_tokens, doubling_grid(tokens, 16)),
        "accuracy_vs_critical_path_tokens": accuracy_curve(
            episodes, lambda e: e.critical_path_tokens, doubling_grid(path, 16)
        ),
        "accuracy_vs_latency_s": accuracy_curve(episodes, lambda e: e.latency_s, doubling_grid(seconds, 0.01)),
    }
