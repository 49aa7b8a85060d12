"""Exceptions raised by :mod:`serving`, and the listing of names in their messages."""

from __future__ import annotations

from collections.abc import Sequence


class InputError(ValueError):
    """The input does not match the model's schema.

    The message names the offending feature (and row, for a batch; and time step, for a
    sequence model's window). ``feature`` holds that name when there is one, ``row`` the row
    index for a batch, ``step`` the time step in the window (0 = oldest) when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        feature: str | None = None,
        row: int | None = None,
        step: int | None = None,
    ):
        super().__init__(message)
        self.feature = feature
        self.row = row
        self.step = step


class BundleError(Exception):
    """A bundle (``model.onnx`` + ``schema.json``) is missing, corrupt, inconsistent with its
    ONNX graph, or incompatible with the model currently being served."""


_MAX_LISTED = 5


def name_list(names: Sequence[str]) -> str:
    """Names for an error message: the first five quoted, then how many more there are."""
    shown = ", ".join(repr(n) for n in list(names)[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")
