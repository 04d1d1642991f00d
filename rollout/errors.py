"""Typed errors of the rollout engines.

A bad *request* never raises out of `Engine.generate`: `InvalidRequest` is raised by an
engine core when a request is added and turned into a `Completion` with
`FinishReason.ERROR` by the async driver. The other errors are raised at construction or
weight-update time, where the caller can fix the cause.
"""
from __future__ import annotations


class InvalidRequest(ValueError):
    """A request the engine cannot serve (empty prompt, token id outside the vocabulary,
    a prompt that leaves no room in the context window, stop strings without a tokenizer)."""


class UnsupportedModel(ValueError):
    """A checkpoint the `paged` backend cannot run; the message names the config field."""


class EngineConfigError(ValueError):
    """An EngineConfig that cannot work with this model (e.g. a KV cache too small for one block)."""


class WeightUpdateError(ValueError):
    """`update_weights` got an unknown parameter name or a wrong shape; no weight was changed."""


class EngineDeadError(RuntimeError):
    """An engine step raised (a bug, not a bad request); every request in flight got this
    error and the engine accepts no more work. `__cause__` is the original exception."""
