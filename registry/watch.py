"""Resolve ``name@alias`` to a local bundle for ``serving.AliasWatcher``.

Lives outside ``serving/`` because it needs MLflow. Each version is downloaded once into
``cache_dir/<name>/v<version>``; the resolver returns that directory, so the watcher reloads
exactly when the alias moves (from ``alphaops promote``, the canary DAG, or the MLflow UI). A
legacy stage transition to Production is mapped to ``champion`` on every poll.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from registry.client import CHAMPION, Registry


def alias_resolver(registry: Registry, name: str, alias: str, cache_dir: Path) -> Callable[[], Path | None]:
    """A resolver returning the bundle dir of the version ``alias`` points at (None if unset)."""
    name = registry.qualify(name)
    cache = Path(cache_dir) / name

    def resolve() -> Path | None:
        if alias == CHAMPION:
            registry.sync_legacy_stages(name)
        version = registry.alias_version(name, alias)
        if version is None:
            return None
        target = cache / f"v{version}"
        if not (target / "schema.json").exists():
            registry.load_bundle(name, version, target)
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


def canary_router(registry: Registry, name: str, cache_dir: Path, *, share: float) -> object:
    """A ``serving.CanaryRouter`` over ``name@champion`` and, if set, ``name@challenger``.

    ``share`` (``ALPHAOPS_CANARY_SHARE``, 10% by default) of routing keys go to the challenger.
    """
    import serving

    from registry.client import CHALLENGER

    champion = alias_resolver(registry, name, CHAMPION, cache_dir)()
    if champion is None:
        raise LookupError(f"{registry.qualify(name)} has no champion to serve")
    challenger = alias_resolver(registry, name, CHALLENGER, cache_dir)()
    return serving.CanaryRouter(serving.Predictor.load(champion),
                                serving.Predictor.load(challenger) if challenger else None, share=share)
