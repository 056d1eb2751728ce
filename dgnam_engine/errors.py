"""Errors a user can read: each carries one line that says what went wrong and what to do."""


class UserError(Exception):
    """Bad input or a missing resource; the CLI prints the message and exits with code 2."""


class WeightsMissing(UserError):
    pass


class WeightsCorrupt(UserError):
    pass


class RunCancelled(Exception):
    """Raised when a progress callback asks to stop; nothing of the run is kept."""
