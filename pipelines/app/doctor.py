"""`alphaops doctor`: the health of one ALPHAOPS_HOME state.

It ends orphans with a reason (the reaper: dead ``dag.test()`` runs, MLflow runs left RUNNING,
versions never validated), and reports who holds the embedded warehouse's lock, the disk use
of each part of the state, and cached version bundles that are stale (their version is gone,
archived or rejected).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from pipelines.config import Settings

STATE_PARTS = ("warehouse", "mlflow.db", "mlartifacts", "airflow", "cache", "bundles", "logs", "stack")


def warehouse_lock(settings: Settings) -> dict[str, Any]:
    """Whether another process holds the embedded warehouse now, and who (PID, command, for how long)."""
    if settings.clickhouse_url:
        return {"embedded": False, "held": False}
    lock_path = Path(f"{settings.warehouse_path}.lock")
    if not lock_path.exists():
        return {"embedded": True, "held": False, "lock_file": str(lock_path)}
    fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(lock_path.read_text() or "null") or {}
            except ValueError:
                holder = {}
            since = holder.get("since")
            return {"embedded": True, "held": True, "lock_file": str(lock_path), "pid": holder.get("pid"),
                    "command": holder.get("command"),
                    "held_seconds": round(time.time() - float(since), 1) if since else None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return {"embedded": True, "held": False, "lock_file": str(lock_path)}
    finally:
        os.close(fd)


def disk_use(home: Path) -> dict[str, int]:
    """Bytes under each part of the state (files only; a missing part is 0)."""
    def size(path: Path) -> int:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())

    return {part: size(home / part) if (home / part).exists() else 0 for part in STATE_PARTS}


def stale_bundles(settings: Settings) -> list[dict[str, str]]:
    """Cached version bundles (``cache/versions/NAME/VERSION``) whose version is gone, archived or rejected."""
    from registry import Registry

    root = settings.home_dir / "cache" / "versions"
    if not root.exists():
        return []
    client = Registry.from_settings(settings).client
    stale = []
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        name, version = folder.parent.name, folder.name
        try:
            tags = client.get_model_version(name, version).tags
        except Exception:  # MLflow raises its own type for an unknown model or version
            stale.append({"path": str(folder), "reason": "the version no longer exists"})
            continue
        if tags.get("lifecycle") == "archived" or tags.get("validation_status") == "rejected":
            stale.append({"path": str(folder), "reason": f"the version is {tags.get('lifecycle') or 'rejected'}"})
    return stale


def health_report(settings: Settings, *, reap: bool = True) -> dict[str, Any]:
    """Orphans ended (with ``reap``), the warehouse lock, disk use and stale bundles of this state."""
    from pipelines.orchestration.reaper import reap_orphans

    return {"home": str(settings.home_dir), "orphans_ended": reap_orphans(settings) if reap else [],
            "warehouse_lock": warehouse_lock(settings), "disk_bytes": disk_use(settings.home_dir),
            "stale_bundles": stale_bundles(settings)}
