"""The lock file that lets one process at a time hold the embedded (chDB) warehouse.

``<data path>.lock`` beside the data path: the holder takes an exclusive ``flock`` on it and
writes its PID, command line and start time into it, so a process that gives up waiting can
name the holder. Releasing clears the record, then the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; False if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def write_holder(fd: int) -> None:
    """Record this process as the holder in the lock file (read by those who wait)."""
    try:
        with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = " ".join([sys.executable, *sys.argv])
    holder = {"pid": os.getpid(), "command": command, "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def release(fd: int) -> None:
    """Clear the holder record, release the lock and close the file."""
    try:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def busy_message(path: str, lock_path: Path, waited: float) -> str:
    """Why an open gave up: who holds the warehouse (from the lock file), since when, how long we waited."""
    try:
        holder = json.loads(lock_path.read_text() or "null")
    except (OSError, ValueError):
        holder = None
    if isinstance(holder, dict):
        held_for = time.time() - float(holder.get("since", time.time()))
        who = (f"PID {holder.get('pid')} ({holder.get('command') or 'command unknown'}) "
               f"has held it for {held_for:.1f} s")
    else:
        who = "its holder released it just now, or wrote no record"
    return (f"warehouse {path!r} is busy: {who}; gave up after waiting {waited:.1f} s "
            f"(raise ALPHAOPS_WAREHOUSE_BUSY_TIMEOUT_SECONDS to wait longer; lock file {lock_path})")
