"""The one family of user-facing errors: what went wrong, and what to do about it."""

from __future__ import annotations


class T3Error(Exception):
    """An error the user can act on. The command line prints it on one line, without a traceback."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ModelNotFound(T3Error):
    """A model name, path or file that cannot be resolved."""


class BadInput(T3Error):
    """An input file (image, document, dataset) that is missing or unreadable."""


class BackendError(T3Error):
    """A backend failed to load or to generate."""


class ContextFull(BackendError):
    """The conversation no longer fits the model's context window."""
