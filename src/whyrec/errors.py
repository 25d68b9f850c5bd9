"""Errors that describe a user's mistake.

The CLI prints a `WhyrecError` as one line and exits non-zero; anything else is a bug
and keeps its traceback. Keeping the distinction in one type lets every layer (CLI, API,
chat) tell the user what to fix without leaking internals.
"""


class WhyrecError(Exception):
    """A problem with the user's input, files or configuration, explained in one line."""


class DataError(WhyrecError):
    """Input data is missing, malformed or inconsistent."""


class FetchError(WhyrecError):
    """A dataset could not be obtained or failed verification."""


class BundleError(WhyrecError):
    """A trained bundle is missing, corrupt or from an incompatible version."""


class NotFoundError(WhyrecError):
    """A user, item or title that the data does not contain."""


class ResourceError(WhyrecError):
    """The machine lacks the memory (or another resource) a job needs; nothing was started."""


class NotFittedError(WhyrecError):
    """A model was asked to score (or save) before `fit` or `load`."""


class AlreadySeenError(WhyrecError):
    """The request is about an item the person already has (the API answers 409)."""
