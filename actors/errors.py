"""Errors the command line prints as one message, without a traceback (exit status 2)."""


class UsageError(Exception):
    """A problem with what the user asked for: a missing file, an impossible request."""
