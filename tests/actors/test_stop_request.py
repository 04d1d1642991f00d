"""A first SIGTERM/SIGINT asks the loop to stop; a second one does what the process did before."""
from __future__ import annotations

import os
import signal

import pytest

from actors.stop_request import StopRequest


@pytest.fixture
def handlers():
    """Record what the process's own handlers receive, and put the originals back after."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    received: list[int] = []
    for number in saved:
        signal.signal(number, lambda n, frame: received.append(n))
    yield received
    for number, handler in saved.items():
        signal.signal(number, handler)


def test_the_first_signal_is_a_request_the_second_goes_to_the_handler_before(handlers):
    messages: list[str] = []
    own = signal.getsignal(signal.SIGTERM)
    with StopRequest(messages.append) as stop:
        assert stop.requested == ""
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM" and handlers == []
        assert "stopping after this step" in messages[0]
        os.kill(os.getpid(), signal.SIGINT)  # a second signal of either kind
        assert handlers == [signal.SIGINT] and stop.requested == "SIGTERM"
        assert signal.getsignal(signal.SIGTERM) is own  # restored at the second signal
    assert signal.getsignal(signal.SIGTERM) is own


def test_handlers_are_restored_on_exit_without_a_signal(handlers):
    own = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    with StopRequest(lambda text: None) as stop:
        assert signal.getsignal(signal.SIGTERM) is not own[signal.SIGTERM]
    assert stop.requested == ""
    assert {number: signal.getsignal(number) for number in own} == own


def test_an_ignored_signal_stays_ignored(handlers):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a job started in the background by a shell
    with StopRequest(lambda text: None) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested == "" and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
