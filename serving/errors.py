"""Exceptions raised by :mod:`serving`."""

from __future__ import annotations


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
