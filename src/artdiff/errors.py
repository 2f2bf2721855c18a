"""Errors a user can fix: the command line prints them as one line, without a traceback."""


class UserError(Exception):
    """A mistake in the user's input (a path, an option, a file's format) with a message saying how to fix it."""
