"""The chart-pattern generator: seeded, valid OHLCV, the recorded truth, shapes and breakouts."""

from __future__ import annotations

import numpy as np
import pytest

from models.families.chart_pattern_generator import (
    BREAKOUT,
    PATTERN_NAMES,
    GeneratorConfig,
    generate_patterns,
)

N_PER_CLASS = 30


@pytest.fixture(scope="module")
def patterns():
    return generate_patterns(N_PER_CLASS, seed=5)


def _pattern_closes(patterns, name):
    """Log closes of the pattern part (the last ``length`` bars) of every sample of ``name``."""
    rows = np.flatnonzero(patterns.pattern == PATTERN_NAMES.index(name))
    return [np.log(patterns.windows[i, patterns.truth.start[i]:, 3].astype(np.float64)) for i in rows]


def _smooth(x, width=7):
    return np.convolve(x, np.ones(width) / width, mode="valid")


def test_one_seed_one_set_and_other_seeds_differ(patterns):
    again = generate_patterns(N_PER_CLASS, seed=5)
    np.testing.assert_array_equal(again.windows, patterns.windows)
    np.testing.assert_array_equal(again.pattern, patterns.pattern)
    other = generate_patterns(N_PER_CLASS, seed=6)
    assert not np.allclose(other.windows[:, :, 3], patterns.windows[:, :, 3])


def test_windows_are_valid_ohlcv_with_the_recorded_truth(patterns):
    config = GeneratorConfig()
    n = N_PER_CLASS * len(PATTERN_NAMES)
    assert patterns.windows.shape == (n, config.window, 5) and patterns.future.shape == (n, config.horizon, 5)
    assert np.bincount(patterns.pattern, minlength=len(PATTERN_NAMES)).tolist() == [N_PER_CLASS] * len(PATTERN_NAMES)
    assert len(set(patterns.pattern[:len(PATTERN_NAMES)].tolist())) > 3  # shuffled, not sorted by class
    o, h, l, c, v = (patterns.windows[:, :, k] for k in range(5))
    assert np.isfinite(patterns.windows).all() and (l > 0).all() and (v > 0).all()
    assert (h >= np.maximum(o, c) * (1 - 1e-6)).all() and (l <= np.minimum(o, c) * (1 + 1e-6)).all()
    truth = patterns.truth
    assert list(truth["pattern"]) == [PATTERN_NAMES[k] for k in patterns.pattern]
    assert truth["length"].between(*config.length_range).all()
    assert (truth["start"] == config.window - truth["length"]).all()
    assert truth["amplitude"].between(*config.amplitude_range).all()
    assert truth["noise"].between(*config.noise_range).all()
    assert truth["drift"].between(*config.drift_range).all()
    assert truth["length"].nunique() > 20  # time stretch: many lengths


def test_breakout_direction_follows_the_pattern(patterns):
    truth = patterns.truth
    for name, direction in BREAKOUT.items():
        rows = truth["pattern"] == name
        expected = truth.loc[rows, "lead_in"] if direction is None else direction
        assert (truth.loc[rows, "direction"] == expected).all(), name
    symmetric = truth[truth["pattern"] == "symmetric_triangle"]
    assert set(symmetric["direction"]) == {-1, 1}  # it continues either lead-in trend
    moved = patterns.direction != 0
    # The bars after the window move in the recorded direction, by at least 0.25 of the height.
    np.testing.assert_array_equal(np.sign(patterns.forward_return[moved]), patterns.direction[moved])
    assert (np.abs(patterns.forward_return[moved]) >= 0.25 * truth["amplitude"].to_numpy()[moved]).all()
    last_close = patterns.windows[:, -1, 3].astype(np.float64)
    np.testing.assert_allclose(np.log(patterns.future[:, -1, 3] / last_close), patterns.forward_return, atol=1e-5)


def test_shapes_have_their_landmarks(patterns):
    for name, sign in (("head_and_shoulders", 1), ("inverse_head_and_shoulders", -1)):
        positions = [np.argmax(sign * _smooth(x)) / len(x) for x in _pattern_closes(patterns, name)]
        assert np.mean([0.3 < p < 0.7 for p in positions]) > 0.9, name  # the head is in the middle
    for name, sign in (("double_top", 1), ("double_bottom", -1)):
        ok = []
        for x in _pattern_closes(patterns, name):
            s = sign * _smooth(x)
            half = len(s) // 2
            first, second, middle = s[:half].max(), s[half:].max(), s[half - 5:half + 5].min()
            height = s.max() - s.min()
            ok.append(abs(first - second) < 0.35 * height and middle < min(first, second) - 0.2 * height)
        assert np.mean(ok) > 0.85, name  # two peaks of about one level, a trough between them
    for name, sign in (("channel_up", 1), ("channel_down", -1), ("rising_wedge", 1), ("falling_wedge", -1)):
        slopes = [np.polyfit(np.arange(len(x)), x, 1)[0] for x in _pattern_closes(patterns, name)]
        assert np.mean(np.sign(slopes) == sign) > 0.9, name
    # triangles narrow: the swing range of the last third is below that of the first third
    for name in ("ascending_triangle", "descending_triangle", "symmetric_triangle"):
        narrower = []
        for x in _pattern_closes(patterns, name):
            third = len(x) // 3
            narrower.append(np.ptp(x[-third:]) < np.ptp(x[:third]))
        assert np.mean(narrower) > 0.8, name


def test_amplitude_sets_the_height_and_scale_the_level(patterns):
    truth = patterns.truth
    rows = np.flatnonzero(patterns.pattern != 0)
    heights = [np.log(patterns.windows[i, truth.start[i]:, 1].max() / patterns.windows[i, truth.start[i]:, 2].min())
               for i in rows]
    assert np.corrcoef(heights, truth["amplitude"].to_numpy()[rows])[0, 1] > 0.9
    levels = np.exp(np.log(patterns.windows[:, :, 3]).mean(axis=1))
    assert np.corrcoef(np.log(levels), np.log(truth["scale"]))[0, 1] > 0.99


def test_bars_frame_and_bad_arguments(patterns):
    frame = patterns.bars(0)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"] and len(frame) == 110
    assert str(frame.index.tz) == "UTC"
    with pytest.raises(ValueError, match="length_range"):
        GeneratorConfig(window=60, length_range=(50, 100))
    with pytest.raises(ValueError, match="unknown chart patterns"):
        generate_patterns(2, seed=0, patterns=("cup_and_handle",))
    with pytest.raises(ValueError, match="n_per_class"):
        generate_patterns(0, seed=0)
    only = generate_patterns(3, seed=1, patterns=("double_top",))
    assert set(only.truth["pattern"]) == {"double_top"} and len(only) == 3
