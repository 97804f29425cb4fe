"""The one exception a user can cause; the CLI turns it into one line and exit code 2."""

from __future__ import annotations


class FtdiagError(Exception):
    """A problem with the user's input (path, file, option), not a bug in ftdiag."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
