"""The command line's one error: a mistake the user can fix. Its own module, so that the
sub-commands raise it without importing the entry point that imports them."""


class UsageError(Exception):
    """A mistake the user can fix; printed without a traceback, exit status 2."""
