"""Shadow-feature selection keeps the inputs that carry signal and drops most of the noise."""

from __future__ import annotations

import numpy as np
import pytest

from models.catalog import spec_by_name
from models.selection import TooFewRowsToSelect, select_features


def _market(n: int, n_signal: int, n_noise: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_signal + n_noise)).astype(np.float32)
    logit = X[:, :n_signal] @ np.linspace(1.5, 0.8, n_signal)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    names = [f"signal_{i}" for i in range(n_signal)] + [f"noise_{i}" for i in range(n_noise)]
    return X, y, names


def test_signal_features_are_kept_and_most_noise_is_dropped():
    X, y, names = _market(6000, 4, 40, seed=3)
    selection = select_features(spec_by_name("direction_h1"), X, y, names, purge=1, seed=0)
    assert {f"signal_{i}" for i in range(4)} <= set(selection.kept)
    noise_kept = [n for n in selection.kept if n.startswith("noise_")]
    assert len(noise_kept) <= 8, noise_kept
    assert len(selection.kept) + len(selection.dropped) == len(names)
    assert all(selection.importance[f"signal_{i}"] > selection.noise_level for i in range(4))


def test_a_pure_noise_matrix_keeps_only_the_minimum():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4000, 30)).astype(np.float32)
    y = rng.integers(0, 2, 4000)
    selection = select_features(spec_by_name("direction_h1"), X, y, [f"f{i}" for i in range(30)], seed=1,
                                min_features=5)
    assert len(selection.kept) <= 12
    assert len(selection.kept) >= 5




def test_too_short_a_window_is_refused_with_the_reason():
    X, y, names = _market(400, 2, 5, seed=1)
    with pytest.raises(TooFewRowsToSelect, match="too few to select"):
        select_features(spec_by_name("direction_h1"), X, y, names)
