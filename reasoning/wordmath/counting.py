"""How many distinct problems (keys: template and numbers) a setting admits, exactly.

Per template, the count is the number of number tuples that pass every rule. A part's
tuples are enumerated (at most three slots) into a histogram of its value; the frame
then combines histograms: `total`, `share` and `left` see only the sum of the parts (the
partial sums of positive parts never exceed the whole), so the parts' histograms are
convolved; `compare` pairs two values; `times` scales one. Each frame's own slot is
counted per value of what it combines. tests/reasoning/test_wordmath.py checks the
counts against brute-force enumeration on small settings.

Counts are Python integers (histograms are numpy object arrays), so large settings do not
overflow.
"""
from __future__ import annotations

import itertools

import numpy as np

from reasoning.wordmath.config import WordMathConfig
from reasoning.wordmath.fragments import Fragment
from reasoning.wordmath.problems import apply, slot_range
from reasoning.wordmath.templates import Template, templates


def count_distinct(config: WordMathConfig) -> int:
    """Distinct problems (by key) of the setting: the most `num_train + num_val` can be."""
    return sum(counts_by_template(config).values())


def counts_by_template(config: WordMathConfig) -> dict[str, int]:
    cache: dict[str, np.ndarray] = {}

    def histogram(fragment: Fragment) -> np.ndarray:
        if fragment.name not in cache:
            cache[fragment.name] = part_histogram(fragment, config)
        return cache[fragment.name]

    counts = {}
    for group in templates(config).values():
        for template in group:
            counts[template.id] = template_count(template, [histogram(p) for p in template.parts], config)
    return counts


def part_histogram(fragment: Fragment, config: WordMathConfig) -> np.ndarray:
    """h[v] = how many number tuples of the fragment give value v (0 where none)."""
    top = config.max_value
    counts = np.zeros(top + 1, dtype=np.int64)
    ranges = [range(low, high + 1) for low, high in (slot_range(kind, config) for _, kind in fragment.slots)]
    names = [name for name, _ in fragment.slots]
    if not fragment.ops:
        for v in ranges[0]:
            counts[v] += 1 if v <= top else 0
        return counts.astype(object)
    # The first slot in Python, the rest as numpy arrays: at most max_value x max_quantity^2 values.
    rest = [np.array(t, dtype=np.int64) for t in zip(*itertools.product(*ranges[1:]))] if len(ranges) > 1 else []
    for first in ranges[0]:
        env = {names[0]: np.full(len(rest[0]) if rest else 1, first, dtype=np.int64)}
        env.update(zip(names[1:], rest))
        ok = np.ones_like(env[names[0]], dtype=bool)
        for op in fragment.ops:
            a, b = env[op.left], env[op.right]
            if op.op == "/":
                ok &= (b != 0) & (a % np.where(b == 0, 1, b) == 0)
                value = a // np.where(b == 0, 1, b)
            else:
                value = apply(op.op, a, b)
            ok &= (value >= 1) & (value <= top)
            env[op.out] = value
        np.add.at(counts, env[fragment.value][ok], 1)
    return counts.astype(object)


def template_count(template: Template, parts: list[np.ndarray], config: WordMathConfig) -> int:
    top, factors = config.max_value, range(2, config.max_factor + 1)
    values = np.arange(top + 1)
    if template.frame in ("total", "share", "left"):
        total = parts[0]
        for h in parts[1:]:
            total = np.convolve(total, h)[: top + 1]
        if template.frame == "total":
            return int(total.sum())
        if template.frame == "share":
            ways = np.array([sum(1 for k in factors if v % k == 0) for v in values], dtype=object)
        elif template.world == "count":  # take away c in 2 .. max_quantity, leaving at least 1
            ways = np.array([max(0, min(config.max_quantity, v - 1) - 1) for v in values], dtype=object)
        else:  # a budget m in 2 .. max_value with m - total >= 1
            ways = np.array([max(0, top - max(v + 1, 2) + 1) for v in values], dtype=object)
        return int((total * ways).sum())
    if template.frame == "compare":  # v0 - v1 >= 1
        below = np.concatenate([[0], np.cumsum(parts[1])[:-1]])  # below[v] = sum of h1[u] for u < v
        return int((parts[0] * below).sum())
    assert template.frame == "times", template.frame
    ways = np.array([sum(1 for m in factors if m * v <= top) for v in values], dtype=object)
    return int((parts[0] * ways).sum())
