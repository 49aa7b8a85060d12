"""TA-Lib's C functions without the ``talib`` package's pandas/polars wrapper.

``import talib`` replaces every function of ``talib._ta_lib`` with a Python wrapper that
scans the arguments for pandas or polars Series (a few microseconds per call, as much as
the computation itself on the online path). The feature engines only pass numpy arrays,
so they call the original functions, which the wrapper keeps as ``__wrapped__``.
Use as ``from features import talib_raw as talib``; ``talib.SMA`` is then the C function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from talib import _ta_lib


def __getattr__(name: str) -> Callable[..., Any]:
    function = getattr(_ta_lib, name)
    function = getattr(function, "__wrapped__", function)
    globals()[name] = function  # found directly from now on
    return function
