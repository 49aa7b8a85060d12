import threading
import time

import numpy as np
import pytest

from models.cv import PurgedWalkForward
from models.parallel import default_n_jobs, ordered_map
from models.search import cv_score
from models.catalog import spec_by_name


def test_ordered_map_keeps_order_and_runs_on_several_threads():
    threads = set()

    def slow_square(x: int) -> int:
        threads.add(threading.get_ident())
        time.sleep(0.01 * (5 - x % 5))  # later items finish first
        return x * x

    assert list(ordered_map(slow_square, range(10), n_jobs=3)) == [x * x for x in range(10)]
    assert len(threads) > 1
    assert default_n_jobs() >= 1


def test_ordered_map_stops_starting_work_when_the_consumer_stops():
    started = []

    def record(x: int) -> int:
        started.append(x)
        return x

    results = ordered_map(record, range(100), n_jobs=2)
    assert next(results) == 0
    results.close()
    assert len(started) <= 3


def test_ordered_map_raises_the_error_of_its_item():
    def fail_on_three(x: int) -> int:
        if x == 3:
            raise ValueError("bad item 3")
        return x

    with pytest.raises(ValueError, match="bad item 3"):
        list(ordered_map(fail_on_three, range(6), n_jobs=2))


def test_cv_scores_do_not_depend_on_the_number_of_threads():
    spec = spec_by_name("direction_h1")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1200, 8))
    y = (X[:, 0] + rng.normal(size=1200) > 0).astype(float)
    cv = PurgedWalkForward(n_splits=4, purge=spec.horizon)
    params = {"n_estimators": 40, "random_state": 0}
    serial = cv_score(spec, params, X, y, cv, n_jobs=1)
    threaded = cv_score(spec, params, X, y, cv, n_jobs=2)
    assert len(serial) == 4
    assert serial == threaded
    assert np.mean(serial) > 0.6  # the signal in column 0 is found out of sample
