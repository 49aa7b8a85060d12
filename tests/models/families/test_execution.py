"""The execution family: the replay's fills and costs, the Gymnasium and vectorized environments,
TWAP and VWAP, the PPO policy's contract and ONNX export, and a held-out gain over TWAP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.families.execution import (
    ExecutionPolicy,
    VwapSchedule,
    holdout_episode_costs,
    onnx_policy,
    run_policy,
    twap_actions,
)
from models.families.execution_env import (
    HISTORY_BARS,
    STATE_NAMES,
    BookReplay,
    ExecutionCosts,
    ExecutionSimulator,
    execution_env,
    execution_vec_env,
)


def flat_book(n: int = 200, *, close: float = 100.0, spread: float = 0.02, volume: float = 100.0,
              low_gap: float = 0.0) -> pd.DataFrame:
    """A market that never moves: constant mid, spread, sizes and volume; lows ``low_gap`` below the close."""
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="ts")
    return pd.DataFrame({"close": close, "high": close + low_gap, "low": close - low_gap, "volume": volume,
                         "buy_volume": volume / 2, "spread": spread, "bid_size": 50.0, "ask_size": 50.0}, index=index)


def test_the_replay_refuses_bars_without_a_complete_book():
    with pytest.raises(ValueError, match="missing \\['spread'"):
        BookReplay(flat_book().drop(columns=["spread"]))
    broken = flat_book()
    broken.iloc[70, broken.columns.get_loc("ask_size")] = np.nan
    with pytest.raises(ValueError, match="ask_size"):
        BookReplay(broken)
    with pytest.raises(ValueError, match="at least"):
        BookReplay(flat_book(20))


def test_twap_on_a_still_market_costs_half_the_spread_the_fee_and_the_square_root_impact():
    bars = flat_book()
    replay = BookReplay(bars)
    replay.sigma[:] = 1e-3  # a still market has no volatility: set the impact scale by hand
    horizon, participation = 10, 0.1
    costs = ExecutionCosts(taker_fee_bps=1.0, impact_coef=1.0, permanent_coef=0.0)
    sim = ExecutionSimulator(replay, np.array([100]), np.array([1.0]), horizon=horizon,
                             order_participation=participation, costs=costs)
    shortfall = run_policy(sim, lambda s, k: twap_actions(s, k, horizon))
    child = participation * 100.0  # each child is the parent / horizon = participation · bar volume
    expected = 0.01 / 100 * 1e4 + 1.0 + 1e-3 * np.sqrt(child / 100.0) * 1e4
    assert shortfall[0] == pytest.approx(expected, rel=1e-9)
    # A permanent impact makes each later child dearer: the same schedule costs more.
    with_permanent = ExecutionSimulator(replay, np.array([100]), np.array([-1.0]), horizon=horizon,
                                        order_participation=participation,
                                        costs=ExecutionCosts(permanent_coef=0.5))
    assert run_policy(with_permanent, lambda s, k: twap_actions(s, k, horizon))[0] > expected + 1.0


def test_resting_orders_fill_only_when_traded_through_and_within_the_participation_cap():
    costs = ExecutionCosts(maker_fee_bps=0.0, max_participation=0.1, queue_spreads=1.0)
    still = BookReplay(flat_book(low_gap=0.0))
    sim = ExecutionSimulator(still, np.array([100]), np.array([1.0]), horizon=5, order_participation=0.05,
                             costs=costs)
    _, cost = sim.step(np.array([1.0]), np.array([-1.0]))  # rest everything at the bid: never traded through
    assert cost[0] == 0.0 and sim.remaining[0] == pytest.approx(sim.parent[0])
    moving = BookReplay(flat_book(low_gap=0.05))  # lows 5 cents under the mid: through the bid by 4 cents
    sim = ExecutionSimulator(moving, np.array([100]), np.array([1.0]), horizon=5, order_participation=0.05,
                             costs=costs)
    _, cost = sim.step(np.array([1.0]), np.array([-1.0]))
    filled = sim.parent[0] - sim.remaining[0]
    assert filled == pytest.approx(min(sim.parent[0], 0.1 * 50.0))  # 10% of the bar's 50 sold units
    assert cost[0] == pytest.approx(-0.01 / 100 * 1e4 * filled / sim.parent[0])  # bought at the bid: a gain
    deep = ExecutionSimulator(moving, np.array([100]), np.array([1.0]), horizon=5, order_participation=0.05,
                              costs=ExecutionCosts(queue_spreads=3.0))
    deep.step(np.array([1.0]), np.array([-1.0]))  # needs 6 cents through the bid: no fill
    assert deep.remaining[0] == pytest.approx(deep.parent[0])


def test_what_remains_after_the_last_bar_is_taken():
    replay = BookReplay(flat_book())
    sim = ExecutionSimulator(replay, np.array([100, 120]), np.array([1.0, -1.0]), horizon=3,
                             order_participation=0.05, costs=ExecutionCosts())
    shortfall = run_policy(sim, lambda s, k: (np.zeros(len(s)), np.ones(len(s))))  # send nothing
    assert np.all(sim.remaining == 0.0) and np.all(shortfall > 1.0)  # fee + spread + impact on the whole order
    with pytest.raises(RuntimeError, match="over"):
        sim.step(np.zeros(2), np.ones(2))


def test_vwap_is_twap_when_every_minute_has_the_same_volume():
    bars = flat_book(400)
    replay = BookReplay(bars)
    starts = replay.episode_starts(20, first=HISTORY_BARS)
    sim = ExecutionSimulator(replay, starts, np.ones(len(starts)), horizon=20, order_participation=0.05,
                             costs=ExecutionCosts())
    vwap = VwapSchedule(BookReplay(bars.iloc[:200]))
    assert np.allclose(run_policy(sim, vwap.policy(sim)), run_policy(sim, lambda s, k: twap_actions(s, k, 20)))


def test_the_gymnasium_environment_passes_the_checker_and_its_return_is_minus_the_shortfall(bars):
    from gymnasium.utils.env_checker import check_env

    replay = BookReplay(bars)
    env = execution_env(replay, replay.episode_starts(30, step=1)[:500], horizon=30, order_participation=0.05,
                        costs=ExecutionCosts(), reward_scale=1.0)
    check_env(env, skip_render_check=True)
    state, _ = env.reset(seed=3)
    assert state.shape == (len(STATE_NAMES),) and state[0] == 1.0 and state[1] == 1.0
    total, done, info = 0.0, False, {}
    while not done:
        state, reward, done, _, info = env.step(np.array([0.0, 1.0], dtype=np.float32))
        total += reward
    assert total == pytest.approx(-info["shortfall_bps"], rel=1e-9)


def test_the_vectorized_environment_restarts_all_episodes_together(bars):
    replay = BookReplay(bars)
    env = execution_vec_env(replay, replay.episode_starts(10, step=1), n_envs=4, horizon=10,
                            order_participation=0.05, costs=ExecutionCosts())
    state = env.reset()
    assert state.shape == (4, len(STATE_NAMES))
    for step in range(10):
        state, rewards, dones, infos = env.step(np.tile([[1.0, 1.0]], (4, 1)))
        assert dones.all() == (step == 9)
    assert all("terminal_observation" in i and i["shortfall_bps"] > 0 for i in infos)
    assert np.all(state[:, 0] == 1.0)  # new parent orders


def test_the_policy_follows_the_estimator_contract_and_exports_to_onnx(bars):
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    policy = ExecutionPolicy(total_timesteps=1024, horizon=20, random_state=4)
    with pytest.raises(NotFittedError):
        policy.predict(np.zeros((1, len(STATE_NAMES))))
    assert clone(policy).get_params() == policy.get_params()
    train = bars.iloc[:2000]
    policy.fit(train)
    again = ExecutionPolicy(total_timesteps=1024, horizon=20, random_state=4).fit(train)
    states = np.random.default_rng(0).normal(size=(7, len(STATE_NAMES))).astype(np.float32)
    action = policy.predict(states)
    assert action.shape == (7, 2) and np.all((action[:, 0] >= 0) & (action[:, 0] <= 1))
    assert np.all(np.abs(action[:, 1]) <= 1)
    np.testing.assert_allclose(again.predict(states), action, atol=1e-6)  # same seed, same policy
    exported = onnx_policy(policy.to_onnx().SerializeToString())
    for rows in (states[:1], states):
        fraction, offset = exported(rows, 0)
        assert np.max(np.abs(np.column_stack([fraction, offset]) - policy.predict(rows))) < 1e-5
    with pytest.raises(ValueError, match="shape"):
        policy.predict(np.zeros((2, 3)))


def test_ppo_beats_twap_after_costs_on_held_out_synthetic_episodes():
    """Trained on the first 70% of the bars; scored by its ONNX graph on the episodes after the purge."""
    from scipy.stats import wilcoxon

    from pipelines.ingest.synthetic import SyntheticMarket

    bars, _ = SyntheticMarket(seed=3, n_bars=6000, imbalance_coef=0.2).generate()
    cut = 4200
    policy = ExecutionPolicy(total_timesteps=6144, random_state=0).fit(bars.iloc[:cut])
    costs = holdout_episode_costs(onnx_policy(policy.to_onnx().SerializeToString()), bars, cut, cut + 30, {})
    assert len(costs["policy"]) == 59
    assert costs["policy"].mean() < costs["twap"].mean() and costs["policy"].mean() < costs["vwap"].mean()
    assert wilcoxon(costs["policy"], costs["twap"], alternative="less").pvalue < 0.01
