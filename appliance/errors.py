"""One error type for everything a user can get wrong, carrying its HTTP status.

The CLI prints ``str(error)`` on one line and exits with ``exit_code``; the web layer
renders it as JSON or HTML with ``status``. Subclasses are named for the condition.
"""

from __future__ import annotations


class FalajError(Exception):
    status = 400  # HTTP status
    exit_code = 2  # CLI: 1 a failed check, 2 bad usage or bad input

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadInput(FalajError):
    """Input data (a file, a request body) that cannot be accepted."""


class NotFound(FalajError):
    status = 404


class StoreError(FalajError):
    """A store cannot be opened: wrong or missing key, damaged file, not initialised."""

    status = 503


class KeyMissing(StoreError):
    pass


class WrongKey(StoreError):
    pass


class StoreBusy(StoreError):
    status = 409


class StoreDamaged(StoreError):
    """A store's pages or blocks fail their checksums or cannot be read."""

    @classmethod
    def naming(cls, store: str, problems: list[str]) -> StoreDamaged:
        """One line: the store, its first problem and how many more."""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return cls(f"{store}: damaged: {problems[0]}{more}; restore it from a backup")


class Unavailable(FalajError):
    """A service cannot do its work now (a decision that cannot be logged is not given)."""

    status = 503


class CheckFailed(FalajError):
    """A verification that ran and failed (a gate, a manifest, the audit chain)."""

    status = 409
    exit_code = 1


class BundleTampered(CheckFailed):
    pass


class UnknownModel(NotFound):
    pass


class NotDeployed(NotFound):
    pass


class BadName(BadInput):
    """A table, model or column name that cannot be used."""
