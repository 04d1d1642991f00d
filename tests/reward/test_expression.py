"""The Countdown expression lexer, parser and exact evaluator, on hand-worked inputs."""

from fractions import Fraction

import pytest

from reward.expression import (
    MAX_DEPTH,
    MAX_LITERAL_DIGITS,
    MAX_TOKENS,
    DivisionByZero,
    ExpressionSyntaxError,
    parse,
)


@pytest.mark.parametrize(
    ("text", "rpn", "value"),
    [
        ("6/(1-3/4)", (6, 1, 3, 4, "/", "-", "/"), Fraction(24)),  # 6 / (1/4) = 24
        ("1-2-3", (1, 2, "-", 3, "-"), Fraction(-4)),  # left-assoc: (1-2)-3
        ("8/4/2", (8, 4, "/", 2, "/"), Fraction(1)),  # (8/4)/2, not 8/(4/2) = 4
        ("2*3+4*5", (2, 3, "*", 4, 5, "*", "+"), Fraction(26)),  # 6 + 20
        ("(1+2)*3", (1, 2, "+", 3, "*"), Fraction(9)),
        ("1+2*3-4/5", (1, 2, 3, "*", "+", 4, 5, "/", "-"), Fraction(31, 5)),  # 7 - 4/5
        (" \t\n\r7\n", (7,), Fraction(7)),
        ("((((0))))", (0,), Fraction(0)),
        ("2-7", (2, 7, "-"), Fraction(-5)),
    ],
)
def test_parse_and_evaluate(text, rpn, value):
    expression = parse(text)
    assert expression.rpn == rpn
    assert expression.evaluate() == value


def test_numbers_are_the_literals_in_written_order():
    assert parse("(3 + 3) * 10 / 5").numbers == [3, 3, 10, 5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty expression"),
        ("  \n ", "empty expression"),
        ("(", "ends after '('"),
        ("1+", "ends after '+'"),
        ("-1+2", "unary"),
        ("+1", "unary"),
        ("1*-2", "unary"),
        ("1**2", "found '*'"),
        ("1//2", "found '/'"),
        ("2(3)", "expected an operator at position 1"),
        ("1 2", "expected an operator at position 2"),
        ("()", "found ')'"),
        ("(1", "unclosed '(' at position 0"),
        ("1)", "unmatched ')' at position 1"),
        ("07", "leading zero"),
        ("1.5", "unexpected character '.' at position 1"),
        ("3x", "unexpected character 'x' at position 1"),
        ("1;2", "unexpected character ';'"),
        ("\x00", r"'\x00'"),
        ("1\u3000", "unexpected character"),  # ideographic space is not ASCII whitespace
        ("\uff13", "unexpected character '\uff13'"),  # fullwidth three: isdigit() is True
        ("\u0663", "unexpected character"),  # arabic-indic three
        ("2\u00b2", "unexpected character '²' at position 1"),  # superscript two
    ],
)
def test_syntax_errors_name_the_problem(text, message):
    with pytest.raises(ExpressionSyntaxError) as info:
        parse(text)
    assert message in str(info.value)


def test_literal_length_limit():
    assert parse("9" * MAX_LITERAL_DIGITS).numbers == [int("9" * MAX_LITERAL_DIGITS)]
    with pytest.raises(ExpressionSyntaxError, match="digits"):
        parse("9" * (MAX_LITERAL_DIGITS + 1))


def test_huge_literal_is_rejected_without_converting_it():
    # int() of a 100k-digit string raises ValueError (Python's 4300-digit limit).
    with pytest.raises(ExpressionSyntaxError, match="digits"):
        parse("1" * 100_000)


def test_nesting_limit():
    assert parse("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH).evaluate() == 1
    with pytest.raises(ExpressionSyntaxError, match="nested deeper"):
        parse("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))


def test_depth_counts_open_parentheses_not_total():
    # 100 sibling groups, never more than one deep.
    assert parse("+".join(["(1)"] * 100)).evaluate() == 100


def test_deep_nesting_is_rejected_without_recursion():
    # 500 levels stay under MAX_TOKENS (1003 tokens), so the depth check fires.
    with pytest.raises(ExpressionSyntaxError, match="nested deeper"):
        parse("(" * 500 + "1+2" + ")" * 500)
    # 5,000 levels exceed the token limit first; either way no RecursionError.
    with pytest.raises(ExpressionSyntaxError, match="tokens"):
        parse("(" * 5000 + "1+2" + ")" * 5000)


def test_token_limit():
    with pytest.raises(ExpressionSyntaxError, match="tokens"):
        parse("+".join(["1"] * MAX_TOKENS))


def test_division_by_zero_is_typed():
    with pytest.raises(DivisionByZero):
        parse("7/(5-5)").evaluate()


def test_division_by_a_zero_valued_fraction():
    # 1/3 - 2/6 is exactly zero, so this divisor is zero only after evaluating it.
    with pytest.raises(DivisionByZero):
        parse("1/(1/3-2/6)").evaluate()
