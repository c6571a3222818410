"""The one base class of a user's mistake, which the command line prints as one line with exit code 2.

Every error the package raises for something a user asked for derives from ``ScorediffError`` (and from
``ValueError``, so ``except ValueError`` still catches it): bad configuration, data, checkpoints, command-line
options, and arguments of library functions out of their range. Anything else that escapes is a bug and keeps its
traceback. This module imports nothing, so the math core may raise these too.
"""


class ScorediffError(ValueError):
    """Something a user asked for cannot be done; the message says what was expected and what came."""


class InputError(ScorediffError):
    """An argument of a library function is out of its range or does not fit the model it is used with."""
