"""Property tests: verify_countdown is total, and agrees with an independent evaluation.

The second property builds random expressions over a random multiset of numbers and
computes their value with Fraction while building them, then renders them with the
fewest parentheses precedence allows (plus random redundant ones and whitespace), so a
parser that gets precedence or associativity wrong disagrees with the built value.
"""

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from reward import Reason, verify_countdown
from reward.verdict import MAX_DETAIL_CHARS

# database=None: no .hypothesis/ directory in the work tree, and every run is fresh.
FAST = settings(max_examples=150, deadline=None, database=None)
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
ATOM = 3  # precedence of a literal or a parenthesised group
SPACES = st.sampled_from(["", "", "", " ", "\n", "\t ", "\r\n"])


def assert_well_formed(verdict):
    assert isinstance(verdict.reason, Reason)
    assert verdict.reward == (1.0 if verdict.reason is Reason.CORRECT else 0.0)
    assert len(verdict.detail) <= MAX_DETAIL_CHARS


@FAST
@given(output=st.text())
def test_any_text_gets_a_verdict(output):
    assert_well_formed(verify_countdown([1, 2, 3], 6, output))


@FAST
@given(body=st.text(alphabet="0123456789+-*/() \n\x00\uff13\u00b2", max_size=80))
def test_any_expression_like_answer_gets_a_verdict(body):
    assert_well_formed(verify_countdown([1, 2, 3], 6, f"x<answer>{body}</answer>y"))


@st.composite
def expressions(draw):
    """(numbers, text, value): value is None if some divisor along the way is zero."""
    numbers = draw(st.lists(st.integers(0, 120), min_size=1, max_size=6))
    # Each item: (text, exact value or None, precedence of its top-level operator).
    items = [(str(n), Fraction(n), ATOM) for n in draw(st.permutations(numbers))]
    while len(items) > 1:
        i = draw(st.integers(0, len(items) - 2))
        op = draw(st.sampled_from("+-*/"))
        (left, lval, lprec), (right, rval, rprec) = items[i], items[i + 1]
        # Left operand needs brackets only if it binds looser; the right one also if
        # equal, because a-(b-c) != a-b-c and a/(b/c) != a/b/c.
        if lprec < PRECEDENCE[op] or draw(st.booleans()):
            left = f"({left})"
        if rprec <= PRECEDENCE[op] or draw(st.booleans()):
            right = f"({right})"
        text = f"{left}{draw(SPACES)}{op}{draw(SPACES)}{right}"
        items[i : i + 2] = [(text, apply(op, lval, rval), PRECEDENCE[op])]
    return numbers, items[0][0], items[0][1]


def apply(op, left, right):
    """left op right in Fraction arithmetic; None propagates a division by zero."""
    if left is None or right is None:
        return None
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    return None if right == 0 else left / right


@FAST
@given(case=expressions(), aim_true_value=st.booleans(), other_target=st.integers(-500, 500))
def test_verdict_matches_independent_evaluation(case, aim_true_value, other_target):
    numbers, text, value = case
    hit = aim_true_value and value is not None and value.denominator == 1
    target = int(value) if hit else other_target
    verdict = verify_countdown(numbers, target, f"<answer>{text}</answer>")
    if value is None:
        assert verdict.reason is Reason.DIVISION_BY_ZERO
    elif value == target:
        assert verdict.reason is Reason.CORRECT
    else:
        assert verdict.reason is Reason.WRONG_VALUE
        assert verdict.detail == f"evaluates to {value}, target {target}"
