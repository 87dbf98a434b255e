"""Errors a user can cause.

Anything raised as :class:`UserError` is reported by the command line as one sentence on stderr
with a non-zero exit status and no traceback. Library code raises it at the boundary (file I/O,
argument parsing, data validation); internal invariants use ordinary exceptions.
"""


class UserError(Exception):
    """A mistake in the user's input: a missing or corrupt file, a bad shape, an unknown name."""
