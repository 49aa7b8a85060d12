"""Follow a registry alias: reload a predictor when the alias points somewhere new."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.predictor import Predictor

logger = logging.getLogger(__name__)

Resolver = Callable[[], "str | Path | None"]


class AliasWatcher:
    """Poll ``resolve()`` every ``interval`` seconds in a daemon thread and ``reload`` the
    predictor when the bundle it returns differs from the one being served (another directory,
    or the same directory with another ``model.version``). ``None`` means "no change".

    Resolver errors and refused bundles are logged and counted in ``stats``; nothing is ever
    raised into the caller, and the current model keeps serving.
    """

    def __init__(
        self,
        resolve: Resolver,
        predictor: Predictor,
        interval: float = 30.0,
        *,
        allow_schema_change: bool = False,
        start: bool = True,
    ):
        self.resolve = resolve
        self.predictor = predictor
        self.interval = interval
        self.allow_schema_change = allow_schema_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._checks = self._reloads = self._errors = 0
        self._last_error: str | None = None
        if start:
            self.start()

    def start(self) -> AliasWatcher:
        """Start polling (no-op when already running)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name=f"alias-watcher-{self.predictor.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> AliasWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> bool:
        """Check once; return True when a new bundle was loaded. Never raises."""
        with self._lock:
            self._checks += 1
        try:
            target = self.resolve()
            if target is None:
                return False
            path = Path(target)
            if _same(path, self.predictor.path) and _version(path) == self.predictor.version:
                return False
            self.predictor.reload(path, allow_schema_change=self.allow_schema_change)
        except Exception as e:
            with self._lock:
                self._errors += 1
                self._last_error = f"{type(e).__name__}: {e}"
            logger.warning("alias watcher for %s: %s", self.predictor.name, self._last_error)
            return False
        with self._lock:
            self._reloads += 1
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "checks": self._checks,
                "reloads": self._reloads,
                "errors": self._errors,
                "last_error": self._last_error,
            }


def _version(bundle: Path) -> str | None:
    try:
        return str(
            json.loads((bundle / "schema.json").read_text(encoding="utf-8"))["model"]["version"]
        )
    except Exception:
        return None


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b
