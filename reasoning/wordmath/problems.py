"""Drawing word problems: a template, its numbers, its surface words; train and val splits.

A draw picks a frame uniformly (among the configured ones with a template that fits the
step range), then a number of parts, a world and a template uniformly, then every
number uniformly in its slot's range; numbers that break a rule (a result outside
1 .. max_value, an inexact division) are drawn again, so each template's valid number
tuples are equally likely. Names, objects and items are drawn last and never change the
arithmetic.

A problem's key is (template id, numbers): two problems with the same arithmetic in the
same words are the same problem whatever the names, so validation problems (drawn
first) never share a key with a training problem, and problems are distinct by key
within each split. The same settings and seed give the same problems.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from reasoning.wordmath.config import WordMathConfig
from reasoning.wordmath.fragments import CONTAINERS, ITEMS, NAMES, OBJECTS, THINGS
from reasoning.wordmath.templates import FRAME, Template, templates

Key = tuple[str, tuple[int, ...]]
Drawn = tuple[Template, tuple[int, ...], dict[str, int]]
"""A template, its numbers (together the problem's key) and every slot and result by name."""
DRAWS_WITHOUT_NEW_PROBLEM_LIMIT = 100_000
"""Give up when this many draws in a row found no new distinct problem."""
NUMBER_DRAWS = 200
"""Number tuples tried for a template before drawing another template."""


class ProblemSpaceExhausted(ValueError):
    """The settings admit fewer distinct problems than were asked for."""


@dataclass(frozen=True)
class Step:
    """One arithmetic step: `value = args[0] op args[1]`; an arg is "xI" (the question's
    I-th number) or "sJ" (step J's value)."""

    op: str
    args: tuple[str, str]
    value: int


@dataclass(frozen=True)
class WordProblem:
    id: str
    template: str
    numbers: tuple[int, ...]
    """Every number of the question, in the order it appears there."""
    question: str
    lines: tuple[str, ...]
    """The worked solution, one step a line."""
    steps: tuple[Step, ...]
    branches: tuple[tuple[int, ...], ...]
    """Steps of each part that takes steps of its own: steps in different branches never
    use each other's values (independent sub-quantities); the other steps combine them."""
    answer: int
    labels: tuple[str, ...] = ()
    """Whose quantity each branch computes (the person's name, "Ben"): the goals of its
    parallel trace (reasoning/wordmath/parallel_traces.py)."""

    @property
    def key(self) -> Key:
        return (self.template, self.numbers)


def apply(op: str, a: int, b: int) -> int | None:
    """`a op b` when it is a whole number (division exact), else None."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    assert op == "/", op
    return a // b if b and a % b == 0 else None


def evaluate(template: Template, numbers: tuple[int, ...], max_value: int) -> dict[str, int] | None:
    """Every slot and result by global name, or None when a result breaks a rule."""
    env = {name: n for (name, _), n in zip(template.slots, numbers)}
    for _, op in template.ops:
        value = apply(op.op, env[op.left], env[op.right])
        if value is None or not 1 <= value <= max_value:
            return None
        env[op.out] = value
    return env


def slot_range(kind: str, config: WordMathConfig) -> tuple[int, int]:
    top = {"factor": config.max_factor, "quantity": config.max_quantity, "amount": config.max_value}[kind]
    return 2, top


class Drawer:
    """Draws problems for one setting; `templates` is fixed at construction."""

    def __init__(self, config: WordMathConfig):
        self.config = config
        self.by_group = templates(config)
        frames = sorted({frame for frame, _, _ in self.by_group}, key=config.frames.index)
        if not frames:
            raise ProblemSpaceExhausted(
                f"no template has between {config.min_steps} and {config.max_steps} steps with frames "
                f"{', '.join(config.frames)}, {config.min_parts} to {config.max_parts} parts and at least "
                f"{config.min_part_steps} steps a part; widen the step range"
            )
        self.frames = frames

    def template(self, rng: random.Random) -> Template:
        frame = rng.choice(self.frames)
        groups = [g for g in self.by_group if g[0] == frame]
        num_parts = rng.choice(sorted({n for _, _, n in groups}))
        world = rng.choice(sorted({w for f, w, n in groups if n == num_parts}))
        return rng.choice(self.by_group[(frame, world, num_parts)])

    def draw_numbers(self, rng: random.Random) -> Drawn:
        """A template and valid numbers for it (the problem's key), with every value."""
        while True:
            template = self.template(rng)
            ranges = [slot_range(kind, self.config) for _, kind in template.slots]
            for _ in range(NUMBER_DRAWS):
                numbers = tuple(rng.randint(low, high) for low, high in ranges)
                env = evaluate(template, numbers, self.config.max_value)
                if env is not None:
                    return template, numbers, env

    def render(self, rng: random.Random, drawn: Drawn, problem_id: str) -> WordProblem:
        """The problem of drawn numbers, with surface words drawn now."""
        template, numbers, env = drawn
        return _render(template, numbers, env, _surface(rng, template), problem_id)

    def draw(self, rng: random.Random, problem_id: str) -> WordProblem:
        return self.render(rng, self.draw_numbers(rng), problem_id)


def generate_problems(
    config: WordMathConfig, progress: Callable[[int], None] | None = None
) -> tuple[list[WordProblem], list[WordProblem]]:
    """(train, val) problems for `config`; `progress(n)` is told each new problem."""
    drawer = Drawer(config)
    rng = random.Random(config.seed)
    seen: set[Key] = set()
    val = _draw_distinct(drawer, rng, "val", config.num_val, seen, progress)
    train = _draw_distinct(drawer, rng, "train", config.num_train, seen, progress)
    return train, val


def sample_problems(config: WordMathConfig, count: int, seed: Any) -> list[WordProblem]:
    """`count` problems drawn with their own seed (repeats allowed): e.g. tokenizer text."""
    drawer, rng = Drawer(config), random.Random(seed)
    return [drawer.draw(rng, f"sample-{i}") for i in range(count)]


def _draw_distinct(drawer, rng, split, count, seen, progress) -> list[WordProblem]:
    problems: list[WordProblem] = []
    draws_since_new = 0
    while len(problems) < count:
        drawn = drawer.draw_numbers(rng)
        key = (drawn[0].id, drawn[1])
        if key not in seen:  # surface words are drawn only for a new problem
            seen.add(key)
            problems.append(drawer.render(rng, drawn, f"{split}-{len(problems)}"))
            draws_since_new = 0
            if progress is not None:
                progress(1)
            continue
        draws_since_new += 1
        if draws_since_new >= DRAWS_WITHOUT_NEW_PROBLEM_LIMIT:
            config = drawer.config
            raise ProblemSpaceExhausted(
                f"found only {len(seen)} distinct problems for these settings ({DRAWS_WITHOUT_NEW_PROBLEM_LIMIT:,} "
                f"draws in a row found no new one) while {config.num_val} val + {config.num_train} train were "
                "asked for; ask for fewer problems or widen the ranges (reasoning/wordmath/counting.py counts them)"
            )
    return problems


def _surface(rng: random.Random, template: Template) -> dict[str, Any]:
    num_parts = len(template.parts)
    return {
        "names": rng.sample(NAMES, num_parts + 1),  # the last one is the frame's other person (times)
        "obj": rng.choice(OBJECTS),
        "boxes": [rng.choice(CONTAINERS) for _ in range(num_parts)],
        "items": rng.sample(ITEMS, num_parts),
        "things": rng.sample(THINGS, num_parts),
    }


def _render(
    template: Template, numbers: tuple[int, ...], env: dict[str, int], surface: dict, problem_id: str
) -> WordProblem:
    names = surface["names"]
    text = template.text

    def part_words(i: int) -> dict[str, Any]:
        prefix = f"{i}."
        item, items = surface["items"][i]
        values = {k[len(prefix):]: v for k, v in env.items() if k.startswith(prefix)}
        return {**values, "P": names[i], "obj": surface["obj"], "box": surface["boxes"][i], "item": item,
                "items": items, "thing": surface["things"][i]}  # fmt: skip

    frame_words = {k[len(FRAME) + 1:]: v for k, v in env.items() if k.startswith(f"{FRAME}.")}
    frame_words.update({f"v{i}": env[f"{i}.{part.value}"] for i, part in enumerate(template.parts)})
    frame_words.update({f"P{i}": name for i, name in enumerate(names[:-1])}, Q=names[-1], obj=surface["obj"])
    frame_words.update({f"N{j}": _joined(names[: j + 1]) for j in range(len(template.parts))})
    frame_words["N"] = _joined(names[: len(template.parts)])

    sentences = [text.preface.format(**frame_words)] if text.preface else []
    sentences += [part.clause.format(**part_words(i)) for i, part in enumerate(template.parts)]
    if text.clause:
        sentences.append(text.clause.format(**frame_words))
    sentences.append(text.question.format(**frame_words))

    refs = {name: f"x{i}" for i, (name, _) in enumerate(template.slots)}
    steps, lines, branches = [], [], {}
    for index, (part, op) in enumerate(template.ops):
        steps.append(Step(op.op, (refs[op.left], refs[op.right]), env[op.out]))
        refs[op.out] = f"s{index}"
        lines.append(op.sentence.format(**(part_words(part) if part is not None else frame_words)))
        if part is not None:
            branches.setdefault(part, []).append(index)
    return WordProblem(
        id=problem_id, template=template.id, numbers=numbers, question=" ".join(sentences), lines=tuple(lines),
        steps=tuple(steps), branches=tuple(tuple(b) for _, b in sorted(branches.items())), answer=steps[-1].value,
        labels=tuple(names[part] for part in sorted(branches)),
    )  # fmt: skip


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
