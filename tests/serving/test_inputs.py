"""InputConverter: every accepted input form, rows and windows, and the errors it names."""

from __future__ import annotations

import numpy as np
import pytest
from serving_bundles import feature_row

from serving import InputError, Predictor
from serving.inputs import InputConverter


@pytest.mark.parametrize(
    ("x", "message", "feature"),
    [
        (feature_row(f07=float("nan")), "feature 'f07' is NaN", "f07"),
        (feature_row(f08=float("inf")), "feature 'f08' is infinite", "f08"),
        pytest.param(
            feature_row(f09=1e39),
            "feature 'f09' is out of float32 range",
            "f09",
            marks=pytest.mark.filterwarnings("ignore:overflow encountered in cast"),
        ),
        (feature_row(f10="1.5"), "feature 'f10' is not numeric", "f10"),
        (feature_row(f11=None), "feature 'f11' is not numeric", "f11"),
        (feature_row(f12=[1.0]), "feature 'f12' is not numeric", "f12"),
        (feature_row(bogus=1.0), "unknown feature(s) 'bogus'", "bogus"),
        ({k: v for k, v in feature_row().items() if k != "f33"}, "missing feature(s) 'f33'", "f33"),
        ([0.1] * 59, "expected 60 features in schema order, got 59: missing 'f59'", "f59"),
        ([0.1] * 61, "got 61: 1 extra value(s) after 'f59'", None),
        ([0.1] * 20 + [float("nan")] + [0.1] * 39, "feature 'f20' is NaN", "f20"),
        (np.full((2, 60), 0.1, np.float32).tolist() + [[0.1] * 3], "row 2: expected 60", "f03"),
        ("0.1,0.2", "got str", None),
        (None, "got NoneType", None),
        (np.zeros((0, 60), np.float32), "empty batch", None),
        (np.zeros((1, 2, 60), np.float32), "shape (1, 2, 60)", None),
    ],
)
def test_input_errors_name_the_feature(
    clf: Predictor, x, message: str, feature: str | None
) -> None:
    with pytest.raises(InputError) as info:
        clf.predict(x)
    assert message in str(info.value)
    assert info.value.feature == feature
    assert isinstance(info.value, ValueError)


def test_batch_error_names_row(clf: Predictor, rows) -> None:
    bad = rows[:5].copy()
    bad[3, 17] = np.nan
    with pytest.raises(InputError, match=r"row 3: feature 'f17' is NaN") as info:
        clf.predict(bad)
    assert info.value.row == 3


# -- the converter on its own: rows and windows are one code path, shaped by ``window`` -------
NAMES = ("a", "b", "c")


def test_one_converter_takes_every_form_of_rows_and_windows() -> None:
    rows, windows = InputConverter(NAMES), InputConverter(NAMES, window=4)
    assert (rows.shape, windows.shape) == ((3,), (4, 3))
    row = np.arange(3, dtype=np.float32)
    window = np.arange(12, dtype=np.float32).reshape(4, 3)
    for conv, item in ((rows, row), (windows, window)):
        by_name = dict(zip(NAMES, item.T.tolist()))  # a window: feature -> values, oldest first
        for x in (item, item.tolist(), tuple(item.tolist()), item.astype(np.float64), by_name):
            a, single = conv.fast(x)
            assert single and a.dtype == np.float32 and a.flags.c_contiguous
            np.testing.assert_array_equal(a, item[None])
        batch = np.stack([item, item + 1])
        a, single = conv.fast(batch.astype(np.float64))
        assert not single and a.dtype == np.float32
        np.testing.assert_array_equal(a, batch)
        logged = batch if conv is rows else batch[:, -1]  # a window's last time step
        np.testing.assert_array_equal(conv.logged(a, False), logged)
        assert conv.is_batch(batch) and conv.is_batch([item.tolist()] * 2)
        assert not conv.is_batch(item) and not conv.is_batch(by_name)
        # the exact checks read the same values
        for x in (by_name, item.tolist(), item):
            np.testing.assert_array_equal(conv.check(x, None), item)


def test_fast_path_leaves_anything_odd_to_the_exact_checks() -> None:
    rows, windows = InputConverter(NAMES), InputConverter(NAMES, window=4)
    for conv in (rows, windows):
        nan = np.zeros(conv.shape)
        nan[-1] = np.nan
        for x in (None, "abc", b"abc", 1.5, {"a": 1.0}, [1.0, "x", 2.0], [[1.0], [2.0, 3.0]],
                  np.zeros(0), nan, np.zeros((0, *conv.shape)), np.array(["1", "2", "3"])):
            assert conv.fast(x) is None, x
    assert windows.fast(np.zeros(3)) is None  # a row is not a window
    assert windows.fast(np.zeros((2, 3))) is None  # nor is a short window


def test_window_errors_name_the_time_step_and_fallback_reads_the_last_one() -> None:
    conv = InputConverter(NAMES, window=4)
    window = np.zeros((4, 3)).tolist()
    window[2][1] = float("nan")
    nan_at = r"row 5: feature 'b' at time step 2 \(0 = oldest, 3 = latest\) is NaN"
    with pytest.raises(InputError, match=nan_at) as e:
        conv.check(window, 5)
    assert (e.value.feature, e.value.row, e.value.step) == ("b", 5, 2)
    window[2] = [0.0, 0.0]
    short = r"^time step 2: expected 3 features in schema order, got 2: missing 'c'"
    with pytest.raises(InputError, match=short) as e:
        conv.check(window, None)
    assert (e.value.feature, e.value.step) == ("c", 2)
    empty = r"^empty batch: expected at least one window of shape \[4, 3\]$"
    with pytest.raises(InputError, match=empty):
        raise conv.empty_batch()
    assert conv.values({"a": [1.0, 2.0], "b": [float("nan")], "c": "x"}) == {"a": 2.0}
    assert conv.values([[0.0, 0.0, 0.0], [1.0, float("inf"), 3.0]]) == {"a": 1.0, "c": 3.0}
    assert InputConverter(NAMES).values([1.0, None, 3.0]) == {"a": 1.0, "c": 3.0}
    assert InputConverter(NAMES).values([1.0, 2.0]) == {}  # a short row: nothing by position
