import numpy as np
import pytest

from models.cv import PurgedKFold, PurgedWalkForward, holdout_split


def test_walk_forward_trains_on_the_past_only_with_a_purge_gap():
    cv = PurgedWalkForward(n_splits=4, purge=5)
    folds = list(cv.split(1000))
    assert len(folds) == 4
    for train, test in folds:
        assert train.max() + 5 < test.min(), "purge gap of 5 bars between train and test"
        assert test.min() - train.max() == 6
    tests = np.concatenate([t for _, t in folds])
    assert len(np.unique(tests)) == len(tests), "test folds do not overlap"


def test_purged_kfold_drops_rows_around_each_test_fold():
    cv = PurgedKFold(n_splits=5, purge=3, embargo=7)
    for train, test in cv.split(500):
        lo, hi = test.min(), test.max()
        assert not np.any((train >= lo - 3) & (train <= hi + 7))


def test_holdout_is_the_last_part_after_a_purge():
    train, hold = holdout_split(1000, 0.2, purge=10)
    assert hold.min() == 800 and hold.max() == 999
    assert train.max() == 789


def test_holdout_refuses_too_little_data():
    with pytest.raises(ValueError, match="too few"):
        holdout_split(40, 0.2, purge=5)


def test_take_rows_is_a_view_for_a_consecutive_run_and_a_copy_otherwise():
    from models.cv import take_rows

    X = np.arange(40.0).reshape(20, 2)
    run = take_rows(X, np.arange(3, 9))
    assert np.shares_memory(run, X) and np.array_equal(run, X[3:9])
    for rows in (np.array([0, 2, 1, 3]), np.array([5, 4, 3]), np.array([1, 2, 4])):
        picked = take_rows(X, rows)
        assert not np.shares_memory(picked, X) and np.array_equal(picked, X[rows])
    assert take_rows(X, np.array([], dtype=int)).shape == (0, 2)
