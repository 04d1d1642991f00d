"""Lexer, parser and exact evaluator for the arithmetic in a Countdown answer.

The grammar is deliberately tiny: non-negative integer literals written with ASCII
digits, the binary operators + - * / with the usual precedence (* / bind tighter than
+ -, all left-associative), parentheses, and ASCII whitespace (space, tab, newline,
carriage return) between tokens. Not covered, each rejected as a syntax error: unary
plus or minus, `**` and `//`, implicit multiplication such as `2(3)`, decimal points,
literals with a leading zero (`07`, matching Python's grammar that reference Countdown
verifiers use), literals longer than MAX_LITERAL_DIGITS, non-ASCII digits such as
U+FF13 or U+0663 (`str.isdigit` accepts them; this lexer does not), and any other character.

The input is untrusted model output. It is never handed to eval/exec/ast/compile; the
parser is an iterative shunting-yard, so deep nesting cannot reach Python's recursion
limit, and MAX_TOKENS and MAX_DEPTH bound the work and the size of the values.
Evaluation uses fractions.Fraction, so intermediate values may be negative or
fractional and are compared exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

MAX_LITERAL_DIGITS = 9  # Countdown numbers are < 10**9 (see reward.record)
MAX_TOKENS = 1024  # answers are capped far below this; this bounds direct callers
MAX_DEPTH = 64  # parenthesis nesting

_WHITESPACE = frozenset(" \t\n\r")
_DIGITS = frozenset("0123456789")
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}

# A term in reverse Polish notation: a literal or a binary operator character.
RpnItem = int | str


class ExpressionSyntaxError(ValueError):
    """The text is not an expression of this grammar; the message names the spot."""


class DivisionByZero(ArithmeticError):
    """Evaluation divided by a subexpression whose exact value is zero."""


class _Pending(NamedTuple):
    """An operator or '(' waiting on the shunting-yard stack."""

    symbol: str
    pos: int


@dataclass(frozen=True)
class Token:
    """One lexeme: a literal (`value` is an int) or a one-character symbol."""

    value: int | str
    pos: int  # offset of the token's first character in the parsed text


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens, raising ExpressionSyntaxError on the first bad one."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
            continue
        if len(tokens) >= MAX_TOKENS:
            raise ExpressionSyntaxError(f"more than {MAX_TOKENS} tokens")
        if ch in _DIGITS:
            start = i
            while i < n and text[i] in _DIGITS and i - start <= MAX_LITERAL_DIGITS:
                i += 1
            digits = text[start:i]
            if len(digits) > MAX_LITERAL_DIGITS:
                raise ExpressionSyntaxError(
                    f"number at position {start} has more than {MAX_LITERAL_DIGITS} digits"
                )
            if len(digits) > 1 and digits[0] == "0":
                raise ExpressionSyntaxError(
                    f"number {digits!r} at position {start} has a leading zero"
                )
            tokens.append(Token(int(digits), start))
            continue
        if ch in _PRECEDENCE or ch in "()":
            tokens.append(Token(ch, i))
            i += 1
            continue
        raise ExpressionSyntaxError(f"unexpected character {ch!r} at position {i}")
    return tokens


@dataclass(frozen=True)
class Expression:
    """A parsed expression in reverse Polish notation, e.g. 6/(1-3/4) -> 6 1 3 4 / - /."""

    rpn: tuple[RpnItem, ...]

    @property
    def numbers(self) -> list[int]:
        """The literals in the order they were written (repeats included)."""
        return [item for item in self.rpn if isinstance(item, int)]

    def evaluate(self) -> Fraction:
        """The exact value; raises DivisionByZero if any divisor evaluates to zero."""
        stack: list[Fraction] = []
        for item in self.rpn:
            if isinstance(item, int):
                stack.append(Fraction(item))
                continue
            right = stack.pop()
            left = stack.pop()
            if item == "+":
                stack.append(left + right)
            elif item == "-":
                stack.append(left - right)
            elif item == "*":
                stack.append(left * right)
            else:
                if right == 0:
                    raise DivisionByZero(f"division by zero: {left} / 0")
                stack.append(left / right)
        assert len(stack) == 1, "parser produced unbalanced RPN"
        return stack[0]


def parse(text: str) -> Expression:
    """Parse `text` into an Expression; raises ExpressionSyntaxError naming the position.

    Shunting-yard with an explicit "expecting an operand" state, which is what rejects
    unary operators, two numbers in a row, empty parentheses and trailing operators.
    """
    tokens = tokenize(text)
    if not tokens:
        raise ExpressionSyntaxError("empty expression")
    rpn: list[RpnItem] = []
    pending: list[_Pending] = []  # operators and open parentheses not yet emitted
    depth = 0
    expect_operand = True
    for token in tokens:
        value, pos = token.value, token.pos
        if isinstance(value, int):
            if not expect_operand:
                raise ExpressionSyntaxError(
                    f"expected an operator at position {pos}, found {value}"
                )
            rpn.append(value)
            expect_operand = False
        elif value == "(":
            if not expect_operand:
                raise ExpressionSyntaxError(f"expected an operator at position {pos}, found '('")
            depth += 1
            if depth > MAX_DEPTH:
                raise ExpressionSyntaxError(
                    f"parentheses nested deeper than {MAX_DEPTH} at position {pos}"
                )
            pending.append(_Pending(value, pos))
        elif expect_operand:
            hint = " (unary operators are not allowed)" if value in "+-" else ""
            raise ExpressionSyntaxError(
                f"expected a number or '(' at position {pos}, found {value!r}{hint}"
            )
        elif value == ")":
            while pending and pending[-1].symbol != "(":
                rpn.append(pending.pop().symbol)
            if not pending:
                raise ExpressionSyntaxError(f"unmatched ')' at position {pos}")
            pending.pop()
            depth -= 1
        else:  # a binary operator: first emit pending ones that bind at least as tightly
            while pending and _binds_at_least_as_tightly(pending[-1].symbol, value):
                rpn.append(pending.pop().symbol)
            pending.append(_Pending(value, pos))
            expect_operand = True
    if expect_operand:
        last = tokens[-1]
        raise ExpressionSyntaxError(f"expression ends after {last.value!r} at position {last.pos}")
    while pending:
        symbol, pos = pending.pop()
        if symbol == "(":
            raise ExpressionSyntaxError(f"unclosed '(' at position {pos}")
        rpn.append(symbol)
    return Expression(tuple(rpn))


def _binds_at_least_as_tightly(stacked: str, incoming: str) -> bool:
    """True if operator `stacked` must be applied before `incoming` (left-associativity)."""
    return stacked != "(" and _PRECEDENCE[stacked] >= _PRECEDENCE[incoming]
