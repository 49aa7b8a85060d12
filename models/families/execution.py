"""The execution family: a PPO policy (Stable-Baselines3) that works parent orders, and the
rules it must beat, TWAP and VWAP, on the same replayed episodes.

The environment, fill, fee and impact model are in :mod:`models.families.execution_env`.
:class:`ExecutionPolicy` follows the scikit-learn contract: ``fit(bars)`` trains PPO on episodes
wholly inside the training bars, ``predict(state)`` gives the deterministic action ``[N, 2]``
(child fraction of what remains, limit offset in half-spreads from the mid; ``+1`` takes), and
``to_onnx()`` exports the deterministic actor (the policy network's mean action, clipped and
mapped to those two outputs) with ``torch.onnx.export(dynamo=False)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from models.families.execution_env import (
    STATE_NAMES,
    BookReplay,
    ExecutionCosts,
    ExecutionSimulator,
    execution_vec_env,
)

OUTPUT_NAMES = ("child_fraction", "limit_offset")

Policy = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def run_policy(simulator: ExecutionSimulator, policy: Policy) -> np.ndarray:
    """Each episode's implementation shortfall (bps) under ``policy(state, step) -> (fraction, offset)``."""
    state = simulator.reset()
    while not simulator.done:
        fraction, offset = policy(state, simulator.step_index)
        state, _ = simulator.step(fraction, offset)
    return simulator.shortfall_bps.copy()


def twap_actions(state: np.ndarray, step: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """TWAP: an equal share of the parent each bar (1/bars left of what remains), taking liquidity."""
    n = len(state)
    return np.full(n, 1.0 / (horizon - step)), np.ones(n)


class VwapSchedule:
    """VWAP: children in proportion to the volume expected in each bar, taking liquidity.

    The expected volume of a bar is the mean volume of the training bars at the same time of day
    (minute of the day for intraday bars), so the schedule uses the training window only.
    """

    def __init__(self, train_replay: BookReplay, bucket: str = "minute"):
        self.bucket = bucket
        keys = self._keys(train_replay.index)
        self.profile_ = pd.Series(train_replay.volume).groupby(keys).mean()
        self.default_ = float(np.mean(train_replay.volume))

    def _keys(self, index: pd.DatetimeIndex) -> np.ndarray:
        return np.asarray(index.hour * 60 + index.minute if self.bucket == "minute" else index.hour)

    def expected_volume(self, replay: BookReplay, bars: np.ndarray) -> np.ndarray:
        keys = self._keys(replay.index[bars.reshape(-1)])
        return self.profile_.reindex(keys).fillna(self.default_).to_numpy().reshape(bars.shape)

    def policy(self, simulator: ExecutionSimulator) -> Policy:
        horizon = simulator.horizon
        bars = simulator.starts[:, None] + np.arange(horizon)[None, :]
        expected = self.expected_volume(simulator.replay, bars)
        left = np.cumsum(expected[:, ::-1], axis=1)[:, ::-1]  # expected volume from each bar to the end

        def act(state: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
            return expected[:, step] / left[:, step], np.ones(len(state))

        return act


def passive_twap_actions(state: np.ndarray, step: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """TWAP's sizes resting at the near touch (what does not fill is taken after the last bar);
    reported beside the rules, not gated on."""
    n = len(state)
    return np.full(n, 1.0 / (horizon - step)), np.full(n, -1.0)


def alternating_sides(n: int) -> np.ndarray:
    """Buy, sell, buy, ...: the held-out episodes are half buys and half sells."""
    return np.where(np.arange(n) % 2 == 0, 1.0, -1.0)


def rule_shortfalls(replay: BookReplay, starts: np.ndarray, *, horizon: int, order_participation: float,
                    costs: ExecutionCosts, vwap: VwapSchedule) -> dict[str, np.ndarray]:
    """Per-episode shortfall (bps) of TWAP, VWAP and passive TWAP on the given episodes (half buys, half sells)."""
    def simulator() -> ExecutionSimulator:
        return ExecutionSimulator(replay, starts, alternating_sides(len(starts)), horizon=horizon,
                                  order_participation=order_participation, costs=costs)

    vwap_sim = simulator()
    return {"twap": run_policy(simulator(), lambda s, k: twap_actions(s, k, horizon)),
            "vwap": run_policy(vwap_sim, vwap.policy(vwap_sim)),
            "passive_twap": run_policy(simulator(), lambda s, k: passive_twap_actions(s, k, horizon))}


def actions_from_outputs(fraction: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(fraction, dtype=float).reshape(-1), np.asarray(offset, dtype=float).reshape(-1)


def _actor_module(policy):
    """The PPO policy's deterministic action as a torch module: the actor's mean, clipped to the
    action space and mapped to ``child_fraction`` in [0, 1] and ``limit_offset`` in [-1, 1]."""
    import torch

    class DeterministicActor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = copy.deepcopy(policy.features_extractor)
            self.latent = copy.deepcopy(policy.mlp_extractor.policy_net)
            self.action = copy.deepcopy(policy.action_net)

        def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mean = torch.clamp(self.action(self.latent(self.features(state))), -1.0, 1.0)
            return (mean[:, 0:1] + 1.0) / 2.0, mean[:, 1:2]

    return DeterministicActor().eval()


class ExecutionPolicy(BaseEstimator):
    """PPO (Stable-Baselines3) on the replayed episodes of the training bars (:mod:`models.families.execution_env`).

    ``fit(bars)`` trains on episodes wholly inside ``bars``; ``predict(state)`` returns the
    deterministic action ``[N, 2]`` (child fraction, limit offset); ``to_onnx()`` exports it.
    """

    def __init__(self, horizon: int = 30, order_participation: float = 0.05, total_timesteps: int = 30_000,
                 learning_rate: float = 3e-4, n_envs: int = 16, n_steps: int = 64, batch_size: int = 128,
                 n_epochs: int = 5,
                 gamma: float = 1.0, hidden_size: int = 32, log_std_init: float = -0.5, ent_coef: float = 0.0,
                 taker_fee_bps: float = 1.0, maker_fee_bps: float = 0.0, impact_coef: float = 1.0,
                 permanent_coef: float = 0.5, max_participation: float = 0.1, queue_spreads: float = 1.0,
                 random_state: int = 0, n_threads: int = 1):
        self.horizon = horizon
        self.order_participation = order_participation
        self.total_timesteps = total_timesteps
        self.learning_rate = learning_rate
        self.n_envs = n_envs
        self.n_steps = n_steps
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.gamma = gamma
        self.hidden_size = hidden_size
        self.log_std_init = log_std_init
        self.ent_coef = ent_coef
        self.taker_fee_bps = taker_fee_bps
        self.maker_fee_bps = maker_fee_bps
        self.impact_coef = impact_coef
        self.permanent_coef = permanent_coef
        self.max_participation = max_participation
        self.queue_spreads = queue_spreads
        self.random_state = random_state
        self.n_threads = n_threads

    def costs(self) -> ExecutionCosts:
        return ExecutionCosts(taker_fee_bps=self.taker_fee_bps, maker_fee_bps=self.maker_fee_bps,
                              impact_coef=self.impact_coef, permanent_coef=self.permanent_coef,
                              max_participation=self.max_participation, queue_spreads=self.queue_spreads)

    def fit(self, bars: pd.DataFrame, y: object = None) -> ExecutionPolicy:
        import torch
        from stable_baselines3 import PPO

        replay = BookReplay(bars)
        starts = replay.episode_starts(self.horizon, step=1)
        if not len(starts):
            raise ValueError(f"the training bars hold no episode of {self.horizon} bars after "
                             f"the state's history; pass more bars")
        env = execution_vec_env(replay, starts, n_envs=self.n_envs, horizon=self.horizon,
                                order_participation=self.order_participation, costs=self.costs(),
                                seed=self.random_state)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)
        try:
            model = PPO("MlpPolicy", env, learning_rate=self.learning_rate, n_steps=self.n_steps,
                        batch_size=self.batch_size, n_epochs=self.n_epochs, gamma=self.gamma,
                        ent_coef=self.ent_coef, seed=self.random_state, device="cpu", verbose=0,
                        policy_kwargs={"net_arch": [self.hidden_size, self.hidden_size],
                                       "log_std_init": self.log_std_init})
            model.learn(total_timesteps=self.total_timesteps)
        finally:
            torch.set_num_threads(threads)
        self.actor_ = _actor_module(model.policy)
        self.n_training_episodes_ = int(len(starts))
        self.timesteps_ = int(model.num_timesteps)
        return self

    def predict(self, state: np.ndarray) -> np.ndarray:
        """Deterministic action per state row: ``[N, 2]`` = (child fraction, limit offset)."""
        import torch

        if not hasattr(self, "actor_"):
            raise NotFittedError("ExecutionPolicy is not fitted; call fit(bars) first")
        state = np.asarray(state, dtype=np.float32)
        if state.ndim != 2 or state.shape[1] != len(STATE_NAMES):
            raise ValueError(f"state must have shape [N, {len(STATE_NAMES)}] ({', '.join(STATE_NAMES)}), "
                             f"got {state.shape}")
        with torch.no_grad():
            fraction, offset = self.actor_(torch.from_numpy(state))
        return np.column_stack([fraction.numpy().reshape(-1), offset.numpy().reshape(-1)]).astype(np.float64)

    def policy_function(self) -> Policy:
        def act(state: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
            action = self.predict(state)
            return action[:, 0], action[:, 1]

        return act

    def to_onnx(self):
        """The deterministic actor as ONNX: input ``input`` float32 ``[N, 8]``; outputs
        ``child_fraction`` and ``limit_offset``, float32 ``[N, 1]``."""
        import io

        import onnx
        import torch

        from models.onnx_export import INPUT_NAME

        if not hasattr(self, "actor_"):
            raise NotFittedError("ExecutionPolicy is not fitted; call fit(bars) first")
        buffer = io.BytesIO()
        torch.onnx.export(self.actor_, (torch.zeros(1, len(STATE_NAMES)),), buffer, dynamo=False, opset_version=17,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}})
        return onnx.load_from_string(buffer.getvalue())


def onnx_policy(onnx_bytes: bytes) -> Policy:
    """The policy of an exported bundle, run by onnxruntime (what serving runs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def act(state: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        fraction, offset = session.run(list(OUTPUT_NAMES), {input_name: state.astype(np.float32)})
        return actions_from_outputs(fraction, offset)

    return act


MIN_HOLDOUT_EPISODES = 20


def holdout_episode_costs(policy: Policy, bars: pd.DataFrame, train_stop: int, holdout_start: int,
                          params: dict) -> dict[str, np.ndarray]:
    """Per-episode shortfall (bps) of ``policy`` and of the rules on the held-out episodes.

    The episodes are consecutive, non-overlapping windows of ``horizon`` bars from ``holdout_start``
    on, half buys and half sells; VWAP's volume profile comes from ``bars[:train_stop]`` only.
    Returns ``{"policy", "twap", "vwap", "passive_twap"}``, one array each, in episode order.
    """
    from models.cv import InsufficientDataError

    config = ExecutionPolicy(**params)
    replay = BookReplay(bars)
    starts = replay.episode_starts(config.horizon, first=holdout_start)
    if len(starts) < MIN_HOLDOUT_EPISODES:
        raise InsufficientDataError(
            f"{len(starts)} held-out episodes of {config.horizon} bars (at least {MIN_HOLDOUT_EPISODES} needed "
            f"for the paired test); use more bars or a larger holdout")
    costs = config.costs()
    simulator = ExecutionSimulator(replay, starts, alternating_sides(len(starts)), horizon=config.horizon,
                                   order_participation=config.order_participation, costs=costs)
    return {"policy": run_policy(simulator, policy),
            **rule_shortfalls(replay, starts, horizon=config.horizon,
                              order_participation=config.order_participation, costs=costs,
                              vwap=VwapSchedule(BookReplay(bars.iloc[:train_stop])))}


def holdout_states(bars: pd.DataFrame, holdout_start: int, params: dict) -> np.ndarray:
    """The states TWAP passes through on the held-out episodes: rows for ONNX parity and latency checks."""
    config = ExecutionPolicy(**params)
    replay = BookReplay(bars)
    starts = replay.episode_starts(config.horizon, first=holdout_start)
    simulator = ExecutionSimulator(replay, starts, alternating_sides(len(starts)), horizon=config.horizon,
                                   order_participation=config.order_participation, costs=config.costs())
    states = [simulator.reset()]
    while not simulator.done:
        state, _ = simulator.step(*twap_actions(states[-1], simulator.step_index, config.horizon))
        if not simulator.done:
            states.append(state)
    return np.concatenate(states)


def policy_states(policy: Policy, bars: pd.DataFrame, stop: int, params: dict) -> np.ndarray:
    """The states ``policy`` passes through on consecutive, non-overlapping episodes wholly in
    ``bars[:stop]`` (half buys, half sells): what the policy saw where it was trained, the
    reference of the monitor's drift check. float32 ``[n_episodes * horizon, 8]``."""
    from models.cv import InsufficientDataError

    config = ExecutionPolicy(**params)
    replay = BookReplay(bars)
    starts = replay.episode_starts(config.horizon, stop=stop)
    if len(starts) == 0:
        raise InsufficientDataError(f"no episode of {config.horizon} bars fits in the first {stop} bars")
    simulator = ExecutionSimulator(replay, starts, alternating_sides(len(starts)), horizon=config.horizon,
                                   order_participation=config.order_participation, costs=config.costs())
    states = [simulator.reset()]
    while not simulator.done:
        state, _ = simulator.step(*policy(states[-1], simulator.step_index))
        if not simulator.done:
            states.append(state)
    return np.concatenate(states)
