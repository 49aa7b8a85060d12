"""Follow registry aliases: reload a predictor (or a canary router's arms) when an alias moves."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.predictor import Predictor
from serving.router import CanaryRouter
from serving.schema import check_compatible

logger = logging.getLogger(__name__)

Resolver = Callable[[], "str | Path | None"]


class _Poller:
    """A daemon thread that calls ``poll()`` every ``interval`` seconds, with counters."""

    def __init__(self, interval: float, name: str) -> None:
        self.interval = interval
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._checks = self._reloads = self._errors = 0
        self._last_error: str | None = None
        # a bundle that was refused, by (path, file stats): not loaded again until it changes
        self._refused: dict[str, tuple[Any, ...]] = {}

    def poll(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> Any:
        """Start polling (no-op when already running)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _error(self, what: str, e: BaseException, *, log: bool = True) -> None:
        with self._lock:
            self._errors += 1
            self._last_error = f"{type(e).__name__}: {e}"
        if log:
            logger.warning("%s: %s", what, self._last_error)

    def _was_refused(self, arm: str, path: Path) -> bool:
        """True when ``path`` is the bundle this arm refused last, unchanged since: it is not
        loaded again (the refusal is counted, not logged again)."""
        if self._refused.get(arm) != _fingerprint(path):
            return False
        with self._lock:
            self._errors += 1
        return True

    def _remember_refusal(self, arm: str, path: Path) -> None:
        self._refused[arm] = _fingerprint(path)

    def _reloaded(self) -> None:
        with self._lock:
            self._reloads += 1

    @property
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "checks": self._checks,
                "reloads": self._reloads,
                "errors": self._errors,
                "last_error": self._last_error,
            }


class AliasWatcher(_Poller):
    """Poll ``resolve()`` every ``interval`` seconds in a daemon thread and ``reload`` the
    predictor when the bundle it returns differs from the one being served (another directory,
    or the same directory with another ``model.version``). ``None`` means "no change".

    Resolver errors and refused bundles (a broken seal, a graph that does not match, another
    contract) are logged and counted in ``stats``; nothing is ever raised into the caller, and
    the current model keeps serving. A refused bundle is not tried again until its files change.
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
        super().__init__(interval, f"alias-watcher-{predictor.name}")
        self.resolve = resolve
        self.predictor = predictor
        self.allow_schema_change = allow_schema_change
        if start:
            self.start()

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
            if self._was_refused("model", path):
                return False
            try:
                self.predictor.reload(path, allow_schema_change=self.allow_schema_change)
            except Exception:
                self._remember_refusal("model", path)
                raise
        except Exception as e:
            self._error(f"alias watcher for {self.predictor.name}", e)
            return False
        self._reloaded()
        return True


class CanaryWatcher(_Poller):
    """Keep a :class:`CanaryRouter` on two aliases: ``resolve_champion()`` and
    ``resolve_challenger()`` return the bundle directory each alias points at, or None.

    - The champion arm is reloaded in place when its alias moves (None: keep serving).
    - The challenger arm is loaded when its alias is set, reloaded when it moves, and removed
      when the alias is unset (after ``promote`` or ``rollback``).

    Each new bundle is verified as by :meth:`Predictor.load` (seal, graph) and must keep the
    champion's contract (features, feature-set version, classes, outputs) unless
    ``allow_schema_change``; a refused bundle is logged once (naming the mismatch), counted,
    and the arm keeps serving what it served. ``load`` builds a challenger's predictor (e.g.
    with the prediction log attached).
    """

    def __init__(
        self,
        router: CanaryRouter,
        resolve_champion: Resolver,
        resolve_challenger: Resolver,
        interval: float = 30.0,
        *,
        load: Callable[[Path], Predictor] | None = None,
        allow_schema_change: bool = False,
        start: bool = True,
    ):
        super().__init__(interval, f"canary-watcher-{router.champion.name}")
        self.router = router
        self.resolve_champion = resolve_champion
        self.resolve_challenger = resolve_challenger
        self.load = load or Predictor.load
        self.allow_schema_change = allow_schema_change
        if start:
            self.start()

    def poll(self) -> bool:
        """Check both aliases once; True when an arm changed. Never raises."""
        with self._lock:
            self._checks += 1
        champion = self._poll_champion()
        challenger = self._poll_challenger()
        return champion or challenger

    def _poll_champion(self) -> bool:
        predictor = self.router.champion
        try:
            target = self.resolve_champion()
            if target is None:
                return False
            path = Path(target)
            if _same(path, predictor.path) and _version(path) == predictor.version:
                return False
            if self._was_refused("champion", path):
                return False
            try:
                predictor.reload(path, allow_schema_change=self.allow_schema_change)
            except Exception:
                self._remember_refusal("champion", path)
                raise
        except Exception as e:
            self._error(f"canary watcher for {predictor.name}: champion", e)
            return False
        self._reloaded()
        return True

    def _poll_challenger(self) -> bool:
        current = self.router.challenger
        name = self.router.champion.name
        try:
            target = self.resolve_challenger()
            if target is None:
                if current is None:
                    return False
                self.router.set_challenger(None)
                logger.info("%s: challenger alias unset; every call goes to the champion", name)
                self._reloaded()
                return True
            path = Path(target)
            if (current is not None and _same(path, current.path)
                    and _version(path) == current.version):
                return False
            if self._was_refused("challenger", path):
                return False
            try:
                new = self.load(path)
                if not self.allow_schema_change:
                    check_compatible(self.router.champion.schema, new.schema)
            except Exception as e:
                self._remember_refusal("challenger", path)
                logger.error("%s: challenger bundle %s refused, %s: %s", name, path,
                             "no challenger" if current is None
                             else f"still serving challenger v{current.version}", e)
                self._error(f"canary watcher for {name}: challenger", e, log=False)
                return False
            self.router.set_challenger(new)
            logger.info("%s: challenger is now v%s", name, new.version)
        except Exception as e:
            self._error(f"canary watcher for {name}: challenger", e)
            return False
        self._reloaded()
        return True


def bundle_stat(bundle: Path) -> tuple[Any, ...]:
    """(mtime, size, inode) of the bundle's schema.json and model.onnx, None for a missing file:
    changes whenever either file is rewritten or replaced."""
    out: list[Any] = []
    for f in ("schema.json", "model.onnx"):
        try:
            st = (bundle / f).stat()
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


def _fingerprint(bundle: Path) -> tuple[Any, ...]:
    return (str(bundle), *bundle_stat(bundle))


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
