"""Parallel-block markup: rendering, parsing, and malformed outlines refused with a reason."""
from __future__ import annotations

import pytest

from reasoning.protocols.parallel import MarkupError, branch_prompt_suffix, parse_block, render_block, render_join


def test_round_trip():
    text = "34|3 12 19\n" + render_block(["19+3=22|12 22", "12*3=36|19 36"])
    assert text.endswith("<parallel><thread>19+3=22|12 22</thread><thread>12*3=36|19 36</thread></parallel>")
    assert parse_block(text, max_threads=4) == ["19+3=22|12 22", "12*3=36|19 36"]
    assert branch_prompt_suffix("19+3=22|12 22") == "<thread>19+3=22|12 22\n"
    join = render_join(["a", "b"], ["1+1=2|2", None])
    assert join == "<thread>a\n1+1=2|2</thread><thread>b\nFail</thread><conclusion>"


def test_only_the_last_block_is_parsed_and_whitespace_between_headers_is_allowed():
    earlier = render_block(["old"]) + render_join(["old"], ["x"]) + "done</conclusion>\n"
    assert parse_block(earlier + "<parallel>\n<thread>a</thread>\n <thread>b</thread>\n</parallel>", 2) == ["a", "b"]


def test_a_branch_sees_what_the_join_shows_before_its_body():
    # The first branch's prompt suffix + body + </thread> opens the join, character for character.
    join = render_join(["g1", "g2"], ["B1", "B2"])
    assert join.startswith(branch_prompt_suffix("g1") + "B1" + "</thread>")


def test_render_join_needs_one_body_per_goal():
    with pytest.raises(ValueError, match="2 goals but 1 bodies"):
        render_join(["a", "b"], ["1"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("<parallel><thread>a</thread>", "does not end with </parallel>"),
        ("<thread>a</thread></parallel>", "</parallel> without <parallel>"),
        ("<parallel></parallel>", "no threads"),
        ("<parallel>\n</parallel>", "no threads"),
        ("<parallel><thread> </thread></parallel>", "empty goal"),
        ("<parallel>junk<thread>a</thread></parallel>", "expected <thread>"),
        ("<parallel><thread>a</thread>junk</parallel>", "expected <thread>"),
        ("<parallel><thread>a</parallel>", "without </thread>"),
        ("<parallel><thread>a\nb</thread></parallel>", "spans more than one line"),
        ("<parallel><thread>a<answer>1</thread></parallel>", "tags inside a goal"),
        ("<parallel><thread>a<thread>b</thread></parallel>", "tags inside a goal"),
        ("<parallel><thread>a<conclusion></thread></parallel>", "tags inside a goal"),
        ("<parallel><thread><parallel>a</thread></parallel>", "expected <thread>"),  # the inner block is parsed
        ("<parallel>" + "<thread>x</thread>" * 1000 + "</parallel>", "more than 8 threads"),
    ],
)
def test_malformed_blocks(text, message):
    with pytest.raises(MarkupError, match=message):
        parse_block(text, max_threads=8)
