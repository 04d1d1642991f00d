"""Problem templates: one to three parts (fragments.py) combined by a frame.

A frame says how the parts' values become the answer, in the question's last sentences
and the solution's last steps:
- total   (2-3 parts): add them up ("How many marbles do they have in total?");
- share   (1-3 parts): add them up, then divide equally by a factor (exact division);
- left    (1-3 parts): add them up, then take away a quantity (count world) or take the
  sum from a budget given first (money world);
- compare (2 parts):   how many more the first has (or spends) than the second;
- times   (1 part):    someone has (or spends) a factor times as much as the part.
Sums add one part at a time ((v0 + v1) + v2), one step each.

A template is a frame, a world and a sequence of fragments; its id names all three
(e.g. "share/count:boxes+daily"). Its slots are global names ("0.g" is part 0's `g`,
"f.k" the frame's `k`) in the order the numbers appear in the question, so a problem's
key (template id, numbers) determines its question up to surface words.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

from reasoning.wordmath.config import FRAMES, WordMathConfig
from reasoning.wordmath.fragments import FRAGMENTS, Fragment, Op

PARTS = {"total": (2, 3), "share": (1, 2, 3), "left": (1, 2, 3), "compare": (2,), "times": (1,)}
"""How many parts each frame combines."""
WORLDS = ("count", "money")
FRAME = "f"  # prefix of the frame's own slots and results


@dataclass(frozen=True)
class FrameText:
    """A frame instantiated for a world and a number of parts."""

    preface: str  # sentence before the parts ("" for none)
    clause: str  # sentence after the parts ("" for none)
    question: str
    before: tuple[tuple[str, str], ...]  # slots in the preface
    after: tuple[tuple[str, str], ...]  # slots in the clause
    ops: tuple[Op, ...]  # on part values v0.., frame slots and earlier frame results


def frame_text(frame: str, world: str, num_parts: int) -> FrameText:
    """The frame's sentences and steps; `{P0}`, `{N}` (all the parts' names), `{Q}` (another
    person), `{obj}` and the slots are filled in by the problem."""
    count, many = world == "count", num_parts > 1
    ops = _sum_ops(world, num_parts)
    total = ops[-1].out if ops else "v0"  # the sum of the parts
    if frame == "total":
        last = ops[-1]
        ops[-1] = Op("+", last.left, last.right, "answer", last.sentence.replace("{%s}" % last.out, "{answer}"))
        question = "How many {obj} do they have in total?" if count else "How many dollars do they spend in total?"
        return FrameText("", "", question, (), (), tuple(ops))
    if frame == "share" and count:
        clause = ("They share" if many else "{P0} shares") + " all the {obj} equally among {k} friends."
        line = "Each friend gets {%s} / {k} = {answer} {obj}." % total
        ops.append(Op("/", total, "k", "answer", line))
        return FrameText("", clause, "How many {obj} does each friend get?", (), (("k", "factor"),), tuple(ops))
    if frame == "share":
        clause = ("They split" if many else "{P0} splits") + " the cost equally among {k} people."
        line = "Each person pays {%s} / {k} = {answer} dollars." % total
        ops.append(Op("/", total, "k", "answer", line))
        return FrameText("", clause, "How many dollars does each person pay?", (), (("k", "factor"),), tuple(ops))
    if frame == "left" and count:
        ops.append(Op("-", total, "c", "answer", "There are {%s} - {c} = {answer} {obj} left." % total))
        clause, question = "Then {c} of the {obj} get lost.", "How many {obj} are left?"
        return FrameText("", clause, question, (), (("c", "quantity"),), tuple(ops))
    if frame == "left":  # the budget comes first
        owner = "{N} have {m} dollars together." if many else "{P0} has {m} dollars."
        line = ("They have" if many else "{P0} has") + " {m} - {%s} = {answer} dollars left." % total
        ops.append(Op("-", "m", total, "answer", line))
        question = "How many dollars do they have left?" if many else "How many dollars does {P0} have left?"
        return FrameText(owner, "", question, (("m", "amount"),), (), tuple(ops))
    if frame == "compare" and count:
        question = "How many more {obj} does {P0} have than {P1}?"
        line = "{P0} has {v0} - {v1} = {answer} more {obj} than {P1}."
        return FrameText("", "", question, (), (), (Op("-", "v0", "v1", "answer", line),))
    if frame == "compare":
        question = "How many more dollars does {P0} spend than {P1}?"
        line = "{P0} spends {v0} - {v1} = {answer} more dollars than {P1}."
        return FrameText("", "", question, (), (), (Op("-", "v0", "v1", "answer", line),))
    assert frame == "times", frame
    if count:
        clause, question = "{Q} has {m} times as many {obj} as {P0}.", "How many {obj} does {Q} have?"
        line = "{Q} has {m} * {v0} = {answer} {obj}."
    else:
        clause, question = "{Q} spends {m} times as much as {P0}.", "How many dollars does {Q} spend?"
        line = "{Q} spends {m} * {v0} = {answer} dollars."
    return FrameText("", clause, question, (), (("m", "factor"),), (Op("*", "m", "v0", "answer", line),))


def _sum_ops(world: str, num_parts: int) -> list[Op]:
    """(v0 + v1) + v2, one step per addition, named t1, t2; each line names who has it
    ({N1}: the first two parts' names, {N2}: all three)."""
    verb, unit = ("have", "{obj}") if world == "count" else ("spend", "dollars")
    ops = []
    for j in range(1, num_parts):
        left = "v0" if j == 1 else f"t{j - 1}"
        line = "{N%d} %s {%s} + {v%d} = {t%d} %s." % (j, verb, left, j, j, unit)
        ops.append(Op("+", left, f"v{j}", f"t{j}", line))
    return ops


@dataclass(frozen=True)
class Template:
    frame: str
    world: str
    parts: tuple[Fragment, ...]

    @cached_property
    def id(self) -> str:
        return f"{self.frame}/{self.world}:{'+'.join(p.name for p in self.parts)}"

    @cached_property
    def text(self) -> FrameText:
        return frame_text(self.frame, self.world, len(self.parts))

    @property
    def num_steps(self) -> int:
        return sum(len(p.ops) for p in self.parts) + len(self.text.ops)

    @cached_property
    def slots(self) -> tuple[tuple[str, str], ...]:
        """(global name, range) of every number, in the order they appear in the question."""
        text = self.text
        names = [(f"{FRAME}.{name}", kind) for name, kind in text.before]
        for i, part in enumerate(self.parts):
            names += [(f"{i}.{name}", kind) for name, kind in part.slots]
        return tuple(names + [(f"{FRAME}.{name}", kind) for name, kind in text.after])

    @cached_property
    def ops(self) -> tuple[tuple[int | None, Op], ...]:
        """Every step with global names, parts first then the frame's, with the part it
        belongs to (None for the frame's steps, which combine the parts)."""
        steps: list[tuple[int | None, Op]] = []
        for i, part in enumerate(self.parts):
            for op in part.ops:
                steps.append((i, Op(op.op, f"{i}.{op.left}", f"{i}.{op.right}", f"{i}.{op.out}", op.sentence)))
        values = {f"v{i}": f"{i}.{part.value}" for i, part in enumerate(self.parts)}

        def name(local: str) -> str:
            return values.get(local, f"{FRAME}.{local}")

        steps += [(None, Op(op.op, name(op.left), name(op.right), name(op.out), op.sentence)) for op in self.text.ops]
        return tuple(steps)


def templates(config: WordMathConfig) -> dict[tuple[str, str, int], list[Template]]:
    """Every template the settings allow (steps, parts, steps of every part), by (frame,
    world, number of parts), in a fixed order."""
    found: dict[tuple[str, str, int], list[Template]] = {}
    for frame in FRAMES:
        if frame not in config.frames:
            continue
        for world in WORLDS:
            for num_parts in PARTS[frame]:
                if not config.min_parts <= num_parts <= config.max_parts:
                    continue
                fragments = [f for f in FRAGMENTS[world] if len(f.ops) >= config.min_part_steps]
                for parts in itertools.product(fragments, repeat=num_parts):
                    template = Template(frame, world, parts)
                    if config.min_steps <= template.num_steps <= config.max_steps:
                        found.setdefault((frame, world, num_parts), []).append(template)
    return found
