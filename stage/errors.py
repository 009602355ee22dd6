"""The stage's one error type: it cannot do what it was asked (the message is one line for a person)."""

from __future__ import annotations


class StageError(RuntimeError):
    """The stage cannot do what it was asked; the message is one line for a person."""
