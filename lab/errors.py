"""The lab's one user-facing error type (its own module, so every lab module can raise it)."""


class LabError(RuntimeError):
    """Something the user can act on: the lab is not up, a fault does not apply, a command failed."""
