"""The execution environment: parent orders worked through replayed book snapshots.

A parent order of ``Q`` units (buy or sell) must be done within ``horizon`` bars. At the start
of each bar the policy sees the state (:data:`STATE_NAMES`: remaining size, time left, spread,
displayed depth on the side it would take, book imbalance, recent volume, recent direction,
recent volatility) and sends one child order: a fraction of what remains, at a limit price set
by an offset from the mid in half-spreads (``-1`` the near touch, ``0`` the mid, ``+1`` the far
touch, which takes liquidity).

:class:`ExecutionSimulator` replays the bars' top-of-book snapshots (``close`` as the mid,
``spread``, ``bid_size``, ``ask_size``) and flow (``volume``, ``buy_volume``, ``high``, ``low``),
many episodes in lockstep:

- **Taking** (offset ``+1``): the child fills whole at the far touch of the last snapshot, plus a
  square-root temporary impact ``impact_coef · σ · sqrt(q / v)`` of the mid (σ the last 30 bars'
  per-bar volatility, v their mean bar volume: both known before the bar), plus the taker fee.
  It also moves every later price of the episode by a permanent impact linear in size,
  ``permanent_coef · σ · q / v``.
- **Resting** (offset below ``+1``): the child fills at its limit only if the bar trades through
  it by ``queue_spreads`` spreads (a stand-in for the queue ahead of it), and then for at most
  ``max_participation`` of the bar's opposite-side flow (sells for a buy); it pays the maker fee.
  What is not filled is cancelled at the end of the bar.
- Whatever remains after the last bar is taken at its closing snapshot, with its impact.

An episode's cost is its **implementation shortfall** in basis points of the parent order at the
arrival mid (the last close before the episode): ``Σ side·(fill − arrival)·q / (Q·arrival)``
plus the fees. A step's reward is minus the cost it added, so an episode's return is minus its
shortfall.

:func:`execution_env` is the Gymnasium environment (one episode at a time, a random training
start and side per reset); :func:`execution_vec_env` is the same replay as a Stable-Baselines3
``VecEnv`` of episodes in lockstep (numpy over episodes), which is what PPO trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BOOK_COLUMNS = ("close", "high", "low", "volume", "spread", "bid_size", "ask_size")
STATE_NAMES = ("remaining_fraction", "time_left_fraction", "log_spread_bps", "log_depth_to_remaining",
               "book_imbalance", "log_volume_ratio", "recent_direction", "log_volatility_bps")
HISTORY_BARS = 60     # bars of history the state needs before an episode starts
VOLATILITY_BARS = 30  # per-bar volatility and mean volume for the impact model
TAKE_LEVEL = 1.0 - 1e-6  # a limit offset at or above this takes liquidity
STATE_BOUND = 20.0       # every state column is clipped to [-20, 20]
REWARD_SCALE = 10.0      # rewards are minus the cost in bps of the parent, divided by this


@dataclass(frozen=True)
class ExecutionCosts:
    """Fees and the impact and fill model of the replay."""

    taker_fee_bps: float = 1.0
    maker_fee_bps: float = 0.0
    impact_coef: float = 1.0        # Y of the square-root law (temporary impact)
    permanent_coef: float = 0.5     # permanent impact per unit of size / mean bar volume, in σ
    max_participation: float = 0.1  # resting fills: at most this share of the bar's opposite-side flow
    queue_spreads: float = 1.0      # resting fills: the bar must trade this many spreads through the limit


class BookReplay:
    """Per-bar arrays of the snapshots and the state columns computed from them (causal)."""

    def __init__(self, bars: pd.DataFrame):
        missing = [c for c in BOOK_COLUMNS if c not in bars.columns]
        if missing:
            raise ValueError(f"the execution replay needs book columns {list(BOOK_COLUMNS)}; "
                             f"missing {missing} (bars without a book cannot be replayed)")
        frame = bars.loc[:, list(BOOK_COLUMNS)].astype(float)
        if len(frame) < HISTORY_BARS + 2:
            raise ValueError(f"the execution replay needs at least {HISTORY_BARS + 2} bars, got {len(frame)}")
        if not np.isfinite(frame.to_numpy()).all():
            bad = frame.columns[~np.isfinite(frame.to_numpy()).all(axis=0)].tolist()
            raise ValueError(f"book columns {bad} have missing or infinite values")
        if (frame["close"] <= 0).any() or (frame["spread"] < 0).any() or (frame[["bid_size", "ask_size"]] <= 0).any().any():
            raise ValueError("book snapshots need positive prices and sizes and a non-negative spread")
        self.index = pd.DatetimeIndex(bars.index)
        self.close = frame["close"].to_numpy()
        self.high = frame["high"].to_numpy()
        self.low = frame["low"].to_numpy()
        self.volume = frame["volume"].to_numpy()
        self.spread = frame["spread"].to_numpy()
        self.bid_size = frame["bid_size"].to_numpy()
        self.ask_size = frame["ask_size"].to_numpy()
        half_volume = self.volume / 2.0
        self.buy_volume = bars["buy_volume"].astype(float).fillna(pd.Series(half_volume, index=bars.index)).to_numpy() \
            if "buy_volume" in bars else half_volume
        self.sell_volume = np.maximum(self.volume - self.buy_volume, 0.0)
        log_close = np.log(self.close)
        returns = pd.Series(np.diff(log_close, prepend=log_close[0]))
        volume = pd.Series(self.volume)
        self.sigma = returns.rolling(VOLATILITY_BARS, min_periods=2).std().bfill().fillna(1e-4).clip(lower=1e-6).to_numpy()
        self.mean_volume = volume.rolling(VOLATILITY_BARS, min_periods=1).mean().clip(lower=1e-9).to_numpy()
        slow_volume = volume.rolling(HISTORY_BARS, min_periods=1).mean().clip(lower=1e-9).to_numpy()
        fast_volume = volume.rolling(5, min_periods=1).mean().to_numpy()
        self.log_volume_ratio = np.log(np.maximum(fast_volume, 1e-9) / slow_volume)
        self.ret5 = log_close - np.concatenate([np.full(5, log_close[0]), log_close[:-5]])
        self.log_spread_bps = np.log(np.maximum(self.spread / self.close * 1e4, 1e-3))
        self.imbalance = (self.bid_size - self.ask_size) / (self.bid_size + self.ask_size)

    def __len__(self) -> int:
        return len(self.close)

    def episode_starts(self, horizon: int, first: int = 0, stop: int | None = None, step: int | None = None
                       ) -> np.ndarray:
        """Bars where an episode of ``horizon`` bars can start with its history, wholly in ``[first, stop)``."""
        stop = len(self) if stop is None else min(stop, len(self))
        first = max(first, HISTORY_BARS)
        return np.arange(first, stop - horizon + 1, step or horizon)


class ExecutionSimulator:
    """Replays ``len(starts)`` episodes in lockstep; ``sides`` are +1 (buy) or -1 (sell).

    ``order_participation`` sets each parent order: that share of the volume expected over the
    horizon (``horizon`` × the mean bar volume before the start).
    """

    def __init__(self, replay: BookReplay, starts: np.ndarray, sides: np.ndarray, *, horizon: int,
                 order_participation: float, costs: ExecutionCosts):
        starts = np.asarray(starts, dtype=int)
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1 bar, got {horizon}")
        if not len(starts):
            raise ValueError("no episodes to replay")
        if starts.min() < 1 or starts.max() + horizon > len(replay):
            raise ValueError(f"episodes must start at bar 1 or later and end by bar {len(replay)}")
        if not 0 < order_participation <= 1:
            raise ValueError(f"order_participation must lie in (0, 1], got {order_participation}")
        self.replay, self.starts, self.horizon, self.costs = replay, starts, int(horizon), costs
        self.sides = np.asarray(sides, dtype=float)
        arrival = starts - 1
        self.arrival_mid = replay.close[arrival]
        self.parent = order_participation * horizon * replay.mean_volume[arrival]
        self.reset()

    def reset(self) -> np.ndarray:
        self.step_index = 0
        self.remaining = self.parent.copy()
        self.permanent = np.zeros(len(self.starts))
        self.shortfall_bps = np.zeros(len(self.starts))
        return self.observation()

    @property
    def done(self) -> bool:
        return self.step_index >= self.horizon

    def observation(self) -> np.ndarray:
        """The state before the current bar: float32 ``[n_episodes, 8]`` in :data:`STATE_NAMES` order."""
        r, j = self.replay, self.starts + min(self.step_index, self.horizon - 1) - 1
        opposite = np.where(self.sides > 0, r.ask_size[j], r.bid_size[j])
        state = np.column_stack([
            self.remaining / self.parent,
            np.full(len(self.starts), (self.horizon - self.step_index) / self.horizon),
            r.log_spread_bps[j],
            np.clip(np.log(opposite / np.maximum(self.remaining, 1e-3 * self.parent)), -8.0, 8.0),
            self.sides * r.imbalance[j],
            r.log_volume_ratio[j],
            np.clip(self.sides * r.ret5[j] / (r.sigma[j] * np.sqrt(5.0)), -5.0, 5.0),
            np.log(r.sigma[j] * 1e4),
        ])
        return np.clip(state, -STATE_BOUND, STATE_BOUND).astype(np.float32)

    def _take(self, quantity: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Cost (bps of the parent) of taking ``quantity`` at snapshot ``j``; moves the permanent impact."""
        r, c = self.replay, self.costs
        mid = r.close[j] + self.permanent
        impact = c.impact_coef * r.sigma[j] * np.sqrt(quantity / r.mean_volume[j]) * mid
        price = mid + self.sides * (r.spread[j] / 2.0 + impact)
        self.permanent += self.sides * c.permanent_coef * r.sigma[j] * quantity / r.mean_volume[j] * mid
        return (self.sides * (price - self.arrival_mid) / self.arrival_mid * 1e4 + c.taker_fee_bps) * quantity / self.parent

    def step(self, child_fraction: np.ndarray, limit_offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Send one child order per episode; returns (next state, cost of the step in bps of the parent)."""
        if self.done:
            raise RuntimeError("the episodes are over; call reset()")
        r, c = self.replay, self.costs
        fraction = np.clip(np.nan_to_num(np.asarray(child_fraction, dtype=float).reshape(-1)), 0.0, 1.0)
        offset = np.clip(np.nan_to_num(np.asarray(limit_offset, dtype=float).reshape(-1)), -1.0, 1.0)
        i = self.starts + self.step_index
        j = i - 1
        quantity = fraction * self.remaining
        take = offset >= TAKE_LEVEL
        cost = np.zeros(len(self.starts))
        taken = np.where(take, quantity, 0.0)
        cost += self._take(taken, j)
        mid = r.close[j] + self.permanent
        limit = mid + self.sides * offset * r.spread[j] / 2.0
        margin = c.queue_spreads * r.spread[j]
        through = np.where(self.sides > 0, r.low[i] + self.permanent < limit - margin,
                           r.high[i] + self.permanent > limit + margin)
        flow = np.where(self.sides > 0, r.sell_volume[i], r.buy_volume[i])
        rested = np.where(~take & through, np.minimum(quantity, c.max_participation * flow), 0.0)
        cost += (self.sides * (limit - self.arrival_mid) / self.arrival_mid * 1e4 + c.maker_fee_bps) * rested / self.parent
        self.remaining = np.maximum(self.remaining - taken - rested, 0.0)
        self.step_index += 1
        if self.done:  # what is left is taken after the last bar, at its closing snapshot
            cost += self._take(self.remaining, self.starts + self.horizon - 1)
            self.remaining = np.zeros(len(self.starts))
        self.shortfall_bps += cost
        return self.observation(), cost






def _gymnasium_env_class() -> type:
    import gymnasium as gym

    class ExecutionEnv(gym.Env):
        """One parent order per episode, started at a random training bar with a random side.

        Action ``[a0, a1]`` in ``[-1, 1]²``: child fraction ``(a0 + 1) / 2`` of what remains,
        limit offset ``a1`` half-spreads from the mid (``+1`` takes). Reward: minus the step's
        cost in bps of the parent, divided by ``reward_scale``.
        """

        metadata = {"render_modes": []}

        def __init__(self, replay: BookReplay, starts: np.ndarray, *, horizon: int, order_participation: float,
                     costs: ExecutionCosts, reward_scale: float = REWARD_SCALE):
            super().__init__()
            if not len(starts):
                raise ValueError("no training episodes: the training window is shorter than one episode")
            self.replay, self.starts, self.horizon = replay, np.asarray(starts, dtype=int), horizon
            self.order_participation, self.costs, self.reward_scale = order_participation, costs, reward_scale
            self.observation_space = observation_space()
            self.action_space = action_space()
            self.simulator: ExecutionSimulator | None = None

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            super().reset(seed=seed)
            start = self.np_random.choice(self.starts)
            side = 1.0 if self.np_random.random() < 0.5 else -1.0
            self.simulator = ExecutionSimulator(self.replay, np.array([start]), np.array([side]),
                                                horizon=self.horizon, order_participation=self.order_participation,
                                                costs=self.costs)
            return self.simulator.observation()[0], {}

        def step(self, action: np.ndarray):
            if self.simulator is None:
                raise RuntimeError("call reset() before step()")
            fraction, offset = actions_from_policy_space(np.asarray(action, dtype=float).reshape(1, 2))
            state, cost = self.simulator.step(fraction, offset)
            done = self.simulator.done
            info = {"shortfall_bps": float(self.simulator.shortfall_bps[0])} if done else {}
            return state[0], -float(cost[0]) / self.reward_scale, done, False, info

    return ExecutionEnv


def _vec_env_class() -> type:
    from stable_baselines3.common.vec_env import VecEnv

    class ExecutionVecEnv(VecEnv):
        """``n_envs`` episodes replayed in lockstep by one :class:`ExecutionSimulator`; all end together
        (same horizon) and restart at new random training starts and sides."""

        render_mode = None

        def __init__(self, replay: BookReplay, starts: np.ndarray, *, n_envs: int, horizon: int,
                     order_participation: float, costs: ExecutionCosts, seed: int = 0,
                     reward_scale: float = REWARD_SCALE):
            if not len(starts):
                raise ValueError("no training episodes: the training window is shorter than one episode")
            super().__init__(n_envs, observation_space(), action_space())
            self.replay, self.starts, self.horizon = replay, np.asarray(starts, dtype=int), horizon
            self.order_participation, self.costs, self.reward_scale = order_participation, costs, reward_scale
            self.rng = np.random.default_rng(seed)
            self.simulator: ExecutionSimulator | None = None
            self.actions: np.ndarray | None = None

        def _new_episodes(self) -> np.ndarray:
            self.simulator = ExecutionSimulator(
                self.replay, self.rng.choice(self.starts, self.num_envs),
                np.where(self.rng.random(self.num_envs) < 0.5, 1.0, -1.0), horizon=self.horizon,
                order_participation=self.order_participation, costs=self.costs)
            return self.simulator.observation()

        def reset(self) -> np.ndarray:
            return self._new_episodes()

        def step_async(self, actions: np.ndarray) -> None:
            self.actions = np.asarray(actions, dtype=float).reshape(self.num_envs, 2)

        def step_wait(self):
            fraction, offset = actions_from_policy_space(self.actions)
            state, cost = self.simulator.step(fraction, offset)
            rewards = (-cost / self.reward_scale).astype(np.float32)
            if not self.simulator.done:
                return state, rewards, np.zeros(self.num_envs, dtype=bool), [{} for _ in range(self.num_envs)]
            infos = [{"terminal_observation": state[k], "shortfall_bps": float(self.simulator.shortfall_bps[k]),
                      "TimeLimit.truncated": False} for k in range(self.num_envs)]
            return self._new_episodes(), rewards, np.ones(self.num_envs, dtype=bool), infos

        def close(self) -> None:
            self.simulator = None

        def get_attr(self, attr_name, indices=None):
            return [getattr(self, attr_name)] * len(self._get_indices(indices))

        def set_attr(self, attr_name, value, indices=None) -> None:
            setattr(self, attr_name, value)

        def env_method(self, method_name, *args, indices=None, **kwargs):
            return [getattr(self, method_name)(*args, **kwargs) for _ in self._get_indices(indices)]

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * len(self._get_indices(indices))

    return ExecutionVecEnv


def observation_space():
    import gymnasium as gym

    return gym.spaces.Box(-STATE_BOUND, STATE_BOUND, shape=(len(STATE_NAMES),), dtype=np.float32)


def action_space():
    import gymnasium as gym

    return gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)


def actions_from_policy_space(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[N, 2]`` actions in ``[-1, 1]`` → (child fraction in [0, 1], limit offset in [-1, 1])."""
    clipped = np.clip(actions, -1.0, 1.0)
    return (clipped[:, 0] + 1.0) / 2.0, clipped[:, 1]


def execution_env(replay: BookReplay, starts: np.ndarray, **kwargs):
    """The Gymnasium ``ExecutionEnv`` (gymnasium is imported on first use)."""
    return _gymnasium_env_class()(replay, starts, **kwargs)


def execution_vec_env(replay: BookReplay, starts: np.ndarray, **kwargs):
    """The Stable-Baselines3 ``ExecutionVecEnv`` (imported on first use)."""
    return _vec_env_class()(replay, starts, **kwargs)
