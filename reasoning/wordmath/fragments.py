"""The parts a word problem is made of: one sub-quantity each, about one person.

A fragment is a sentence of the question with numbers in named slots (`{g}`, `{e}`) and
the arithmetic steps that compute its value (`Op`: `out = left op right`, each with the
sentence of the worked solution that shows it). A fragment without steps is a given
number ("Ana has 12 marbles."). Two worlds, so that parts can be added up:
- count: things a person has (one kind of object per problem, e.g. marbles);
- money: dollars a person spends (each part buys its own item).

Slot ranges are named, not numbered: `factor` (2 .. max_factor: boxes, days, packs) and
`quantity` (2 .. max_quantity: items, prices), plus `amount` (2 .. max_value) for
budgets. Every result must be a whole number in 1 .. max_value (subtractions stay
positive, divisions are exact); a draw that breaks this is drawn again.

Surface words (names, objects, items) never change the arithmetic and are not part of a
problem's key.
"""
from __future__ import annotations

from dataclasses import dataclass

OPS = ("+", "-", "*", "/")
RANGES = ("factor", "quantity", "amount")


@dataclass(frozen=True)
class Op:
    """One step: `out = left op right`; `sentence` shows it in the solution."""

    op: str
    left: str
    right: str
    out: str
    sentence: str


@dataclass(frozen=True)
class Fragment:
    """A sub-quantity: the question's sentence, its slots (name, range) in the order they
    appear in the sentence, and the steps computing its value (the last step's `out`;
    without steps, the value is the one slot)."""

    name: str
    world: str
    clause: str
    slots: tuple[tuple[str, str], ...]
    ops: tuple[Op, ...] = ()

    def __post_init__(self) -> None:
        assert self.world in ("count", "money"), self.world
        assert all(kind in RANGES for _, kind in self.slots), self.slots
        assert self.ops or len(self.slots) == 1, f"{self.name}: a fragment without steps is one given number"
        assert all(op.op in OPS for op in self.ops)

    @property
    def value(self) -> str:
        """The name of the fragment's value: its last step's out, or its one slot."""
        return self.ops[-1].out if self.ops else self.slots[0][0]


COUNT_FRAGMENTS: tuple[Fragment, ...] = (
    Fragment("has", "count", "{P} has {a} {obj}.", (("a", "quantity"),)),
    Fragment(
        "boxes", "count", "{P} has {g} {box} with {e} {obj} in each.", (("g", "factor"), ("e", "quantity")),
        (Op("*", "g", "e", "v", "{P} has {g} * {e} = {v} {obj}."),),
    ),  # fmt: skip
    Fragment(
        "daily", "count", "{P} collects {r} {obj} every day for {d} days.", (("r", "quantity"), ("d", "factor")),
        (Op("*", "r", "d", "v", "{P} collects {r} * {d} = {v} {obj}."),),
    ),  # fmt: skip
    Fragment(
        "pair", "count", "{P} has {a} small {obj} and {b} big {obj}.", (("a", "quantity"), ("b", "quantity")),
        (Op("+", "a", "b", "v", "{P} has {a} + {b} = {v} {obj}."),),
    ),  # fmt: skip
    Fragment(
        "gave", "count", "{P} had {a} {obj} and gave {b} of them away.", (("a", "quantity"), ("b", "quantity")),
        (Op("-", "a", "b", "v", "{P} has {a} - {b} = {v} {obj} left."),),
    ),  # fmt: skip
    Fragment(
        "boxes_more", "count", "{P} has {g} {box} with {e} {obj} in each and {a} more {obj}.",
        (("g", "factor"), ("e", "quantity"), ("a", "quantity")),
        (
            Op("*", "g", "e", "s", "{P} has {g} * {e} = {s} {obj} in the {box}."),
            Op("+", "s", "a", "v", "With the other {a}, {P} has {s} + {a} = {v} {obj}."),
        ),
    ),  # fmt: skip
    Fragment(
        "daily_gave", "count", "{P} collects {r} {obj} every day for {d} days and then gives {b} of them away.",
        (("r", "quantity"), ("d", "factor"), ("b", "quantity")),
        (
            Op("*", "r", "d", "s", "{P} collects {r} * {d} = {s} {obj}."),
            Op("-", "s", "b", "v", "{P} keeps {s} - {b} = {v} {obj}."),
        ),
    ),  # fmt: skip
)

MONEY_FRAGMENTS: tuple[Fragment, ...] = (
    Fragment("pays", "money", "{P} pays {a} dollars for {thing}.", (("a", "quantity"),)),
    Fragment(
        "buys", "money", "{P} buys {n} {items} for {p} dollars each.", (("n", "factor"), ("p", "quantity")),
        (Op("*", "n", "p", "v", "{P} spends {n} * {p} = {v} dollars."),),
    ),  # fmt: skip
    Fragment(
        "packs", "money",
        "{P} buys {k} packs of {items} with {n} {items} in each pack, and each {item} costs {p} dollars.",
        (("k", "factor"), ("n", "factor"), ("p", "factor")),
        (
            Op("*", "k", "n", "s", "{P} buys {k} * {n} = {s} {items}."),
            Op("*", "s", "p", "v", "{P} spends {s} * {p} = {v} dollars."),
        ),
    ),  # fmt: skip
    Fragment(
        "buys_more", "money", "{P} buys {n} {items} for {p} dollars each and {thing} for {c} dollars.",
        (("n", "factor"), ("p", "quantity"), ("c", "quantity")),
        (
            Op("*", "n", "p", "s", "The {items} cost {n} * {p} = {s} dollars."),
            Op("+", "s", "c", "v", "{P} spends {s} + {c} = {v} dollars."),
        ),
    ),  # fmt: skip
    Fragment(
        "coupon", "money", "{P} buys {n} {items} for {p} dollars each and has a coupon for {c} dollars off.",
        (("n", "factor"), ("p", "quantity"), ("c", "quantity")),
        (
            Op("*", "n", "p", "s", "The {items} cost {n} * {p} = {s} dollars."),
            Op("-", "s", "c", "v", "{P} spends {s} - {c} = {v} dollars."),
        ),
    ),  # fmt: skip
)

FRAGMENTS = {"count": COUNT_FRAGMENTS, "money": MONEY_FRAGMENTS}

NAMES = (
    "Ana", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jack", "Keiko", "Liam",
    "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wes", "Yuki",
)  # fmt: skip
OBJECTS = (
    "apples", "marbles", "stickers", "cookies", "pencils", "shells", "cards", "eggs", "buttons", "stamps",
    "beads", "books", "oranges", "coins", "candies", "crayons",
)  # fmt: skip
CONTAINERS = ("boxes", "bags", "baskets", "jars", "crates", "packs", "cans", "trays")
ITEMS = (
    ("pen", "pens"), ("notebook", "notebooks"), ("book", "books"), ("toy car", "toy cars"), ("cupcake", "cupcakes"),
    ("ticket", "tickets"), ("plant", "plants"), ("shirt", "shirts"), ("mug", "mugs"), ("ball", "balls"),
    ("sandwich", "sandwiches"), ("candle", "candles"),
)  # fmt: skip
THINGS = ("a lamp", "a backpack", "a hat", "a board game", "a scarf", "an umbrella", "a clock", "a kite")
