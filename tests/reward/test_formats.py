"""Finding the answer span: the last complete tag pair, in linear time."""

import time

import pytest

from reward.formats import last_tagged_span


@pytest.mark.parametrize(
    ("output", "span"),
    [
        ("<a>1</a>", "1"),
        ("think... <a>1</a> no wait <a>2</a> done", "2"),  # last pair wins
        ("<a>1<a>2</a>", "2"),  # nearest opening tag before the closing one
        ("<a>1</a>2</a>", "1"),  # first closing tag after that opening tag
        ("<a></a>", ""),
        ("<a>1</a> trailing <a>unclosed", "1"),
        ("no tags", None),
        ("<a>unclosed", None),
        ("closed only</a>", None),
        ("</a><a>", None),  # a closing tag before any opening tag is not a pair
        ("<A>1</A>", None),  # tags are case-sensitive
    ],
)
def test_last_tagged_span(output, span):
    assert last_tagged_span(output, "<a>", "</a>") == span


def test_many_opening_tags_is_linear():
    # A quadratic scan (e.g. a backtracking regex) would take seconds here.
    output = "<a>" * 200_000 + "1</a>" + "</a>" * 200_000
    start = time.perf_counter()
    assert last_tagged_span(output, "<a>", "</a>") == "1"
    assert time.perf_counter() - start < 0.5
