"""Canary routing between a champion and a challenger predictor."""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

from serving.predictor import Predictor

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


def bucket(key: str) -> float:
    """Stable position of a routing key in [0, 1) (blake2b; same in every process)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class CanaryRouter:
    """Send a sticky ``share`` of routing keys to the challenger, the rest to the champion.

    A key (e.g. strategy id, symbol, account) always lands on the same arm for a given share.
    Results carry ``routed_to`` (arm) and ``model_version``. If the challenger raises (even an
    :class:`InputError`, e.g. because it expects other features), the error is counted and the
    champion answers, so a broken challenger never reaches the trading loop.
    """

    def __init__(
        self, champion: Predictor, challenger: Predictor | None = None, share: float = 0.1
    ):
        self._lock = threading.Lock()
        self._arms: tuple[Predictor, Predictor | None, float] = (champion, None, 0.0)
        self._counts = {CHAMPION: 0, CHALLENGER: 0}
        self._errors = {CHAMPION: 0, CHALLENGER: 0}
        self._challenger_failovers = 0
        self.set_challenger(challenger, share)

    @property
    def champion(self) -> Predictor:
        return self._arms[0]

    @property
    def challenger(self) -> Predictor | None:
        return self._arms[1]

    @property
    def share(self) -> float:
        return self._arms[2]

    def set_challenger(self, challenger: Predictor | None, share: float | None = None) -> None:
        """Replace (or remove, with ``None``) the challenger, optionally with a new share."""
        share = self._arms[2] if share is None else share
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}")
        champion = self._arms[0]
        if challenger is not None and challenger.features != champion.features:
            logger.warning(
                "challenger %s uses different features than champion %s", challenger, champion
            )
        self._arms = (champion, challenger, share)

    def promote(self) -> None:
        """The challenger becomes the champion; no challenger afterwards."""
        champion, challenger, share = self._arms
        if challenger is None:
            raise ValueError("no challenger to promote")
        self._arms = (challenger, None, share)

    def rollback(self) -> None:
        """Drop the challenger; all traffic goes to the champion."""
        self._arms = (self._arms[0], None, self._arms[2])

    def route(self, key: str | None) -> str:
        """Which arm answers ``key`` (no key, or no challenger: the champion)."""
        _, challenger, share = self._arms
        if key is None or challenger is None or bucket(key) >= share:
            return CHAMPION
        return CHALLENGER

    def predict(self, x: Any, key: str | None = None, fallback: bool | None = None) -> Any:
        """Predict with the arm that owns ``key``; the result's ``routed_to`` names it."""
        champion, challenger, share = self._arms  # one consistent view per call
        if key is not None and challenger is not None and bucket(key) < share:
            try:
                res = challenger._predict(x, fallback, CHALLENGER)
            except Exception as e:
                logger.warning("challenger %s failed (%s); champion answers", challenger, e)
                with self._lock:
                    self._errors[CHALLENGER] += 1
                    self._challenger_failovers += 1
            else:
                self._bump(self._counts, CHALLENGER)
                return res
        try:
            res = champion._predict(x, fallback, CHAMPION)
        except Exception:
            self._bump(self._errors, CHAMPION)
            raise
        self._bump(self._counts, CHAMPION)
        return res

    def _bump(self, counter: dict[str, int], arm: str) -> None:
        with self._lock:
            counter[arm] += 1

    @property
    def stats(self) -> dict[str, Any]:
        """Answers and errors per arm, and challenger failures answered by the champion."""
        champion, challenger, share = self._arms
        with self._lock:
            return {
                "share": share,
                "champion": {
                    "version": champion.version,
                    "answered": self._counts[CHAMPION],
                    "errors": self._errors[CHAMPION],
                },
                "challenger": None
                if challenger is None
                else {
                    "version": challenger.version,
                    "answered": self._counts[CHALLENGER],
                    "errors": self._errors[CHALLENGER],
                },
                "challenger_failovers": self._challenger_failovers,
            }
