"""Resolve ``name@alias`` to a local bundle for ``serving.AliasWatcher`` / ``serving.CanaryWatcher``.

Lives outside ``serving/`` because it needs MLflow. Each version is downloaded once into
``cache_dir/<name>/v<version>``; the resolver returns that directory, so the watcher reloads
exactly when the alias moves (from ``alphaops promote``, the canary DAG, or the MLflow UI). A
legacy stage transition to Production is mapped to ``champion`` on every poll.

A cached copy is verified (its seal: model.onnx's SHA-256 and the schema's digest) before it is
used, and again whenever its files change; a copy that fails is logged and downloaded again
from the registry, so a copy tampered with on disk is never served, also after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.client import CHALLENGER, CHAMPION, Registry
from serving.watcher import bundle_stat

log = logging.getLogger(__name__)


def alias_resolver(registry: Registry, name: str, alias: str, cache_dir: Path) -> Callable[[], Path | None]:
    """A resolver returning the bundle dir of the version ``alias`` points at (None if unset)."""
    from serving import BundleError, verify_bundle

    name = registry.qualify(name)
    cache = Path(cache_dir) / name
    verified: dict[Path, tuple[Any, ...]] = {}  # cache dir -> file stats when it last verified

    def resolve() -> Path | None:
        if alias == CHAMPION:
            registry.sync_legacy_stages(name)
        version = registry.alias_version(name, alias)
        if version is None:
            return None
        target = cache / f"v{version}"
        if verified.get(target) == bundle_stat(target):
            return target
        if (target / "schema.json").exists():
            try:
                verify_bundle(target)
            except BundleError as exc:
                log.warning("serving cache copy of %s v%s refused (%s); downloading it again from the registry",
                            name, version, exc)
                registry.load_bundle(name, version, target, force=True)
        else:
            registry.load_bundle(name, version, target, force=True)  # the cache is ours to replace
        verify_bundle(target)
        verified[target] = bundle_stat(target)
        return target

    return resolve


def watch_alias(registry: Registry, name: str, alias: str, cache_dir: Path, *, interval: float = 30.0,
                intra_op_num_threads: int = 1) -> tuple[object, object]:
    """Load ``name@alias`` into a ``serving.Predictor`` and keep it current; returns (predictor, watcher)."""
    import serving

    resolve = alias_resolver(registry, name, alias, cache_dir)
    first = resolve()
    if first is None:
        raise LookupError(f"{registry.qualify(name)} has no version with alias {alias!r}")
    predictor = serving.Predictor.load(first, intra_op_num_threads=intra_op_num_threads)
    watcher = serving.AliasWatcher(resolve, predictor, interval=interval)
    return predictor, watcher


def canary_router(registry: Registry, name: str, cache_dir: Path, *, share: float, log: Any = None) -> Any:
    """A ``serving.CanaryRouter`` over ``name@champion`` and, if set, ``name@challenger``.

    ``share`` (``ALPHAOPS_CANARY_SHARE``, 10% by default) of routing keys go to the challenger.
    ``log`` (a ``serving.PredictionLog``) records every call of both arms.
    """
    import serving

    registry.require_model(registry.qualify(name))
    champion = alias_resolver(registry, name, CHAMPION, cache_dir)()
    if champion is None:
        raise LookupError(f"{registry.qualify(name)} has no champion to serve")
    challenger = alias_resolver(registry, name, CHALLENGER, cache_dir)()
    return serving.CanaryRouter(serving.Predictor.load(champion, log=log),
                                serving.Predictor.load(challenger, log=log) if challenger else None, share=share)


def canary_watcher(registry: Registry, name: str, cache_dir: Path, *, share: float, interval: float = 5.0,
                   log: Any = None, allow_schema_change: bool = False) -> tuple[Any, Any]:
    """(router, watcher): :func:`canary_router`, kept on both aliases by a running
    ``serving.CanaryWatcher`` (promote, rollback, a move in the MLflow UI reach it within
    ``interval`` seconds plus a download)."""
    import serving

    router = canary_router(registry, name, cache_dir, share=share, log=log)
    watcher = serving.CanaryWatcher(
        router, alias_resolver(registry, name, CHAMPION, cache_dir),
        alias_resolver(registry, name, CHALLENGER, cache_dir), interval=interval,
        load=lambda path: serving.Predictor.load(path, log=log), allow_schema_change=allow_schema_change)
    return router, watcher
