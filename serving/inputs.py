"""Turn every accepted input form into the float32 array a model takes.

One :class:`InputConverter` serves every model; the shape of one item decides what is accepted:

- a model on rows (``window`` 0): an item is one row ``[n]``, a batch is ``[N, n]``;
- a sequence model: an item is one window ``[window, n]`` (oldest time step first), a batch is
  ``[N, window, n]``.

An item is an array, a list or tuple in schema order, or a dict keyed by feature name (for a
window, each feature maps to its ``window`` values, oldest first). A batch is an array or a
list of items. :meth:`InputConverter.fast` converts well-formed input with a few numpy calls and
never raises; :meth:`~InputConverter.split` and :meth:`~InputConverter.check` diagnose anything
else item by item, with an :class:`InputError` that names the feature, the row of a batch and
the time step of a window. :meth:`~InputConverter.values` reads the valid values of an item for
the schema's fallback rule.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serving.errors import InputError, name_list

F32 = np.dtype(np.float32)
F32_MAX = float(np.finfo(np.float32).max)
NUMERIC_KINDS = frozenset("fiub")


class InputConverter:
    """The input rules of one model: ``names`` (schema order) and ``window`` (0 for rows)."""

    __slots__ = (
        "names", "n", "window", "shape", "index", "_getter", "_size", "_ones", "_one_ndim",
        "_one_of_batch", "_batch_ndim", "_shape_text", "_expected", "_item",
    )

    def __init__(self, names: Sequence[str], window: int = 0):
        self.names = names = tuple(names)
        self.n = n = len(names)
        self.window = w = window
        self.shape: tuple[int, ...] = (w, n) if w else (n,)  # one item
        self.index = {f: i for i, f in enumerate(names)}
        self._getter = operator.itemgetter(*names) if n > 1 else (lambda d: (d[names[0]],))
        self._size = w * n if w else n
        self._ones = np.ones(self._size, dtype=F32)  # for the finiteness dot of one item
        self._one_ndim = len(self.shape)
        self._one_of_batch = (1, *self.shape)
        self._batch_ndim = self._one_ndim + 1
        self._shape_text = f"[{w}, {n}] (time steps x features, oldest first)"
        if w:
            self._expected = (
                f"one window of shape {self._shape_text} or a dict of {w}-value sequences by "
                "feature name"
            )
            self._item = f"window of shape [{w}, {n}]"
        else:
            self._expected = f"a dict keyed by feature name or a sequence of {n} numbers"
            self._item = f"row of {n} features"

    # -- well-formed input -----------------------------------------------------------------
    def fast(self, x: Any) -> tuple[np.ndarray, bool] | None:
        """(float32 C-contiguous batch array, single) for well-formed input: one item, a dict by
        feature name, or a batch array; None to let :meth:`check` diagnose it. Never raises."""
        try:
            t = type(x)
            if t is np.ndarray:
                a = x
            elif t is dict:
                if len(x) != self.n:
                    return None
                a = np.array(self._getter(x))  # dtype inferred: strings/None/lists show up
                if self.window:
                    a = a.T.copy()  # [n, window] -> [window, n], C-contiguous
            elif t is list or t is tuple:
                a = np.array(x)
            else:
                return None
            dt = a.dtype
            if dt is not F32 and dt.kind not in NUMERIC_KINDS:
                return None
            if a.ndim == self._one_ndim:  # one item
                if a.shape != self.shape:
                    return None
                if dt is not F32:
                    a = a.astype(F32)  # values beyond float32 range become inf (and warn)
                elif not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a)
                flat = a.reshape(self._size) if self.window else a
                # one BLAS dot instead of isfinite().all(): NaN/inf propagate into the sum;
                # an overflowing sum of finite values is re-checked exactly.
                if not math.isfinite(flat.dot(self._ones)) and not np.isfinite(flat).all():
                    return None
                return a.reshape(self._one_of_batch), True
            if a.ndim == self._batch_ndim and a.shape[1:] == self.shape and a.shape[0] > 0:
                a = np.ascontiguousarray(a, dtype=F32)
                if not np.isfinite(a).all():
                    return None
                return a, False
            return None
        except Exception:  # odd inputs (ragged lists, overflow warnings as errors, ...)
            return None

    def logged(self, a: np.ndarray, single: bool) -> np.ndarray:
        """What the prediction log keeps of a converted batch: a copy of each row, or of each
        window's last time step; one of them for a single item."""
        if self.window:
            a = a[:, -1]
        return a[0].copy() if single else a.copy()

    # -- diagnosis, item by item -----------------------------------------------------------
    def split(self, x: Any) -> tuple[bool, list[Any]]:
        """(single, items). A batch is an array with one more axis than an item, or a list or
        tuple of items; anything else is one item. A list of rows is a batch when every entry
        is a container (a row is a list of scalars); a list of windows is a batch when some
        entry looks like a window (a window is itself a list of time steps)."""
        if isinstance(x, np.ndarray):
            if x.ndim == self._batch_ndim:
                return False, list(x)
            return True, [x]
        if isinstance(x, (list, tuple)) and x:
            if self.window:
                batch = any(_is_window(r) for r in x)
            else:
                batch = all(isinstance(r, (list, tuple, np.ndarray, dict)) for r in x)
            if batch:
                return False, list(x)
        return True, [x]

    def is_batch(self, x: Any) -> bool:
        """Whether ``predict`` reads ``x`` as a batch (the rule of :meth:`split`)."""
        return not self.split(x)[0]

    def empty_batch(self) -> InputError:
        return InputError(f"empty batch: expected at least one {self._item}")

    def check(self, item: Any, i: int | None) -> np.ndarray:
        """Validate one item exactly; return it as float32 of :attr:`shape`, or raise an
        :class:`InputError` naming the feature (the row ``i`` of a batch, the time step of a
        window) or the expected shape."""
        at = "" if i is None else f"row {i}: "
        w, n = self.window, self.n
        out = np.empty(self.shape, dtype=F32)
        if isinstance(item, Mapping):
            self._check_names(item, at, i)
            for j, f in enumerate(self.names):
                if w:
                    self._check_series(item[f], f, out[:, j], at, i)
                else:
                    out[j] = _number(item[f], f, at, i)
            return out
        if not (isinstance(item, np.ndarray) or _is_sequence(item)):
            raise InputError(f"{at}expected {self._expected}, got {type(item).__name__}", row=i)
        if not w:
            if isinstance(item, np.ndarray) and item.ndim != 1:
                raise InputError(
                    f"{at}expected {n} features in schema order, got an array of shape "
                    f"{item.shape}",
                    row=i,
                )
            self._check_vector(item, out, at, i, None)
            return out
        if (
            (isinstance(item, np.ndarray) and item.ndim != 2)
            or len(item) != w
            or not all(_is_vector(step) for step in item)
        ):
            raise InputError(
                f"{at}expected one window of shape {self._shape_text}, or a batch [N, {w}, {n}]; "
                f"got {_describe_shape(item)}",
                row=i,
            )
        for t, step in enumerate(item):
            self._check_vector(step, out[t], at, i, t)
        return out

    def _check_names(self, item: Mapping, at: str, i: int | None) -> None:
        unknown = [k for k in item if k not in self.index]
        if unknown:
            raise InputError(
                f"{at}unknown feature(s) {name_list([str(k) for k in unknown])}",
                feature=str(unknown[0]),
                row=i,
            )
        missing = [f for f in self.names if f not in item]
        if missing:
            raise InputError(
                f"{at}missing feature(s) {name_list(missing)} ({len(missing)} of {self.n})",
                feature=missing[0],
                row=i,
            )

    def _check_vector(
        self, values: Any, out: np.ndarray, at: str, i: int | None, t: int | None
    ) -> None:
        """One row, or time step ``t`` of a window, in schema order: checked into ``out``."""
        n, names = self.n, self.names
        if len(values) != n:
            if len(values) < n:
                detail, feat = f"missing {name_list(names[len(values) :])}", names[len(values)]
            else:
                detail, feat = f"{len(values) - n} extra value(s) after {names[-1]!r}", None
            step = "" if t is None else f"time step {t}: "
            shape = "" if t is None else f" (window shape {self._shape_text})"
            raise InputError(
                f"{at}{step}expected {n} features in schema order, got {len(values)}: "
                f"{detail}{shape}",
                feature=feat,
                row=i,
                step=t,
            )
        for j, v in enumerate(values):
            out[j] = _number(v, names[j], at, i, t, self.window)

    def _check_series(self, seq: Any, f: str, out: np.ndarray, at: str, i: int | None) -> None:
        """The ``window`` values of feature ``f`` (oldest first), checked into ``out``."""
        w = self.window
        if not _is_vector(seq):
            raise InputError(
                f"{at}feature {f!r}: expected a sequence of {w} values (oldest first), "
                f"got {type(seq).__name__}",
                feature=f,
                row=i,
            )
        if len(seq) != w:
            raise InputError(
                f"{at}feature {f!r}: expected {w} values (oldest first), got {len(seq)}",
                feature=f,
                row=i,
            )
        for t, v in enumerate(seq):
            out[t] = _number(v, f, at, i, t, w)

    def values(self, item: Any) -> dict[str, float]:
        """The valid feature values of an item by name, for the fallback rule: those of a row,
        or of a window's last time step (also when the window is too short). Never raises."""
        w = self.window
        if isinstance(item, Mapping):
            if w:
                pairs = [
                    (f, item[f][-1]) for f in self.names if f in item and _is_vector(item[f], 1)
                ]
            else:
                pairs = [(f, item[f]) for f in self.names if f in item]
            return _valid(pairs)
        if w:
            is_window = (isinstance(item, np.ndarray) and item.ndim == 2) or (
                _is_sequence(item) and len(item) > 0
            )
            if not is_window:
                return {}
            item = item[-1]  # the last time step
            if not _is_vector(item):
                return {}
        elif not (
            isinstance(item, (list, tuple)) or (isinstance(item, np.ndarray) and item.ndim == 1)
        ):
            return {}
        if len(item) != self.n:
            return {}
        return _valid(list(zip(self.names, item)))


def _number(
    v: Any, feature: str, at: str, row: int | None, step: int | None = None, window: int = 0
) -> float:
    """One feature value as a finite float32-representable float, or a precise InputError
    (naming the feature, and the time step of a window when ``step`` is given)."""
    where = "" if step is None else f" at time step {step} (0 = oldest, {window - 1} = latest)"
    ok_type = isinstance(v, (int, float, np.integer, np.floating, np.bool_)) or (
        isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in NUMERIC_KINDS
    )
    if not ok_type:
        shown = repr(v)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise InputError(
            f"{at}feature {feature!r}{where} is not numeric (got {type(v).__name__} {shown})",
            feature=feature,
            row=row,
            step=step,
        )
    try:
        f = float(v)
    except (OverflowError, ValueError, TypeError):
        f = F32_MAX * 2  # an int too large for a float
    problem = (
        "is NaN"
        if math.isnan(f)
        else "is infinite"
        if math.isinf(f)
        else "is out of float32 range"
        if abs(f) > F32_MAX
        else None
    )
    if problem is not None:
        raise InputError(
            f"{at}feature {feature!r}{where} {problem}", feature=feature, row=row, step=step
        )
    return f


def _valid(pairs: list[tuple[str, Any]]) -> dict[str, float]:
    """The valid values among (feature, value) pairs, by feature."""
    values = {}
    for f, v in pairs:
        try:
            values[f] = _number(v, f, "", None)
        except InputError:
            pass
    return values


def _is_sequence(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes))


def _is_vector(x: Any, min_len: int = 0) -> bool:
    """A 1-D array or a list/tuple (of at least ``min_len`` entries)."""
    if isinstance(x, np.ndarray):
        return x.ndim == 1 and x.shape[0] >= min_len
    return _is_sequence(x) and len(x) >= min_len


def _is_window(x: Any) -> bool:
    """Looks like one window of a batch: a dict, a 2-D array, or a sequence of sequences."""
    if isinstance(x, (Mapping, np.ndarray)):
        return isinstance(x, Mapping) or x.ndim == 2
    return _is_sequence(x) and len(x) > 0 and _is_vector(x[0])


def _describe_shape(x: Any) -> str:
    try:
        shape = np.shape(x)
    except Exception:  # ragged nesting
        return f"{len(x)} time steps of unequal length"
    return f"shape [{', '.join(str(d) for d in shape)}]"
