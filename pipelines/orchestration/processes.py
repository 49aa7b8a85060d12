"""Processes of the stack's services: free ports, liveness and readiness, and stopping whole
process trees (every descendant's process group)."""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class StackError(RuntimeError):
    """The stack cannot start, or a service did not come up; the message says which and why."""


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise StackError("no free TCP port on this machine")


def create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(info: dict[str, Any]) -> bool:
    """The recorded process still runs (and is the same process, not a reused PID)."""
    import psutil

    try:
        proc = psutil.Process(int(info["pid"]))
        return proc.status() != psutil.STATUS_ZOMBIE and (
            info.get("started") is None or abs(proc.create_time() - info["started"]) < 1.0)
    except psutil.Error:
        return False


def http_ok(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def ready(info: dict[str, Any]) -> bool:
    if not alive(info):
        return False
    if info.get("url"):
        return http_ok(info["url"])
    if info.get("ready_line"):
        return info["ready_line"] in Path(info["log"]).read_text(errors="replace")
    return True


def wait_ready(name: str, info: dict[str, Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(info):
            return
        if not alive(info):
            break
        time.sleep(0.5)
    tail = "\n".join(Path(info["log"]).read_text(errors="replace").splitlines()[-15:])
    state = "exited" if not alive(info) else f"is not ready after {timeout:.0f} s"
    raise StackError(f"{name} {state}; its log is {info['log']}:\n{tail}")


def signal_tree(pid: int, sig: int) -> list[Any]:
    """Send ``sig`` to a service's process group and to every descendant's group (Airflow runs each
    task in a process group of its own, which a signal to the worker's group alone would miss)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    groups = set()
    for proc in procs:
        try:
            groups.add(os.getpgid(proc.pid))
        except OSError:
            pass
    for group in groups:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    return procs


def stop_process_trees(pids: list[int], *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal every tree at once, then SIGKILL whatever is left after ``timeout``."""
    import psutil

    procs = [proc for pid in pids for proc in signal_tree(pid, sig)]
    _, left = psutil.wait_procs(procs, timeout=timeout)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=5)

