"""APR spawn/join markup: rendering, parsing, and malformed blocks refused with a reason."""
from __future__ import annotations

import pytest

from reasoning.protocols.apr import MarkupError, child_prompt, child_result, parse_spawn, render_join, render_spawn


def test_round_trip():
    text = "Sub Call Budget 2\n" + render_spawn(["19+3=22|12 22", "12*3=36|19 36"])
    assert text.endswith("<spawn><thread>19+3=22|12 22</thread><thread>12*3=36|19 36</thread></spawn>")
    assert parse_spawn(text, max_children=4) == ["19+3=22|12 22", "12*3=36|19 36"]
    assert render_join(["a=1", None]) == "<join><thread>a=1</thread><thread>Fail</thread></join>"
    assert child_prompt("22|3 12 19\n", "19+3=22|12 22") == "22|3 12 19\n19+3=22|12 22\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("<spawn><thread>a</thread>", "does not end with </spawn>"),
        ("<thread>a</thread></spawn>", "</spawn> without <spawn>"),
        ("<spawn></spawn>", "no threads"),
        ("<spawn><thread> </thread></spawn>", "empty child"),
        ("<spawn>junk<thread>a</thread></spawn>", "expected <thread>"),
        ("<spawn><thread>a</spawn>", "without </thread>"),
        ("<spawn><thread>a<answer>1</thread></spawn>", "tags inside a child"),
        ("<spawn>" + "<thread>x</thread>" * 1000 + "</spawn>", "more than 8 children"),
    ],
)
def test_malformed_spawns(text, message):
    with pytest.raises(MarkupError, match=message):
        parse_spawn(text, max_children=8)


def test_child_result():
    assert child_result("3+4=7|7\n<answer>3+4=7|7</answer>") == "3+4=7|7"
    assert child_result("2+2=4|4\nFail") is None
