"""Property-based fuzz: predict either returns a valid result or raises InputError."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from serving_bundles import FEATURES

from serving import InputError, Prediction, Predictor

N = len(FEATURES)

scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-10, max_value=10),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.complex_numbers(max_magnitude=10),
    st.lists(st.floats(min_value=-1, max_value=1), max_size=2),
)
keys = st.one_of(st.sampled_from(FEATURES), st.text(max_size=4), st.integers(0, 5))
near_valid_dict = st.fixed_dictionaries({f: st.floats(-5, 5) for f in FEATURES}).flatmap(
    lambda d: st.dictionaries(keys, scalars, max_size=3).map(lambda extra: {**d, **extra})
)
random_dict = st.dictionaries(keys, scalars, max_size=70)
row_lists = st.one_of(
    st.lists(scalars, min_size=N - 1, max_size=N + 1),
    st.lists(st.floats(-5, 5), min_size=N, max_size=N).flatmap(
        lambda r: st.tuples(st.integers(0, N - 1), scalars).map(
            lambda p: r[: p[0]] + [p[1]] + r[p[0] + 1 :]
        )
    ),
    st.lists(scalars, max_size=5),
)
shapes = st.one_of(
    st.just((N,)), st.just((3, N)), hnp.array_shapes(min_dims=0, max_dims=3, max_side=N + 1)
)
arrays = st.one_of(
    hnp.arrays(
        dtype=st.sampled_from(
            [np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_, np.complex64]
        ),
        shape=shapes,
    ),
    hnp.arrays(dtype=np.dtype("U3"), shape=shapes),
    hnp.arrays(dtype=object, shape=st.sampled_from([(N,), (2, N), (3,)]), elements=scalars),
)
inputs = st.one_of(
    near_valid_dict,
    random_dict,
    row_lists,
    st.lists(row_lists, min_size=1, max_size=3),
    st.lists(near_valid_dict, min_size=1, max_size=3),
    arrays,
    st.text(max_size=10),
    st.none(),
    st.floats(),
    st.binary(max_size=8),
)


@pytest.fixture(scope="module")
def predictors(clf_bundle: Path) -> tuple[Predictor, Predictor]:
    return Predictor.load(clf_bundle), Predictor.load(clf_bundle, fallback=True)


def _check_valid(res: Prediction) -> None:
    assert isinstance(res, Prediction)
    assert res.model_version == "1"
    if res.is_batch:
        n = len(res.label)
        assert (
            res.probabilities.shape == (n, 2)
            and len(res.confidence) == n
            and len(res.fallback) == n
        )
        ok = ~res.fallback
        assert np.isfinite(res.probabilities[ok]).all()
        assert set(res.label.tolist()) <= {0, 1}
        assert set(res.class_name.tolist()) <= {"down", "up"}
    else:
        assert res.label in (0, 1) and res.class_name in ("down", "up")
        assert math.isfinite(res.confidence) and 0.0 <= res.confidence <= 1.0
        if not res.fallback:
            assert res.probabilities.shape == (2,) and np.isfinite(res.probabilities).all()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=inputs)
def test_predict_returns_valid_result_or_input_error(predictors, x) -> None:
    strict, lenient = predictors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow of huge inputs
        try:
            res = strict.predict(x)
        except InputError as e:
            assert str(e)
            # the fallback predictor answers instead of raising (except for an empty batch)
            try:
                fb = lenient.predict(x)
            except InputError as e2:
                assert "empty batch" in str(e2)
            else:
                _check_valid(fb)
                assert np.any(fb.fallback)
        else:
            _check_valid(res)
            assert not np.any(res.fallback)
            # valid input: fallback mode gives the same model answer
            same = lenient.predict(x)
            np.testing.assert_array_equal(np.asarray(same.label), np.asarray(res.label))
