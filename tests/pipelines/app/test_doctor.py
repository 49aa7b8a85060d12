"""`alphaops doctor`: the warehouse lock's holder, disk use, stale bundles and orphans, on a real state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pipelines.config import get_settings


def test_doctor_names_the_lock_holder_and_reports_disk_and_stale_bundles(alphaops_home, tmp_path):
    from pipelines.app.doctor import health_report
    from warehouse import open_warehouse

    settings = get_settings()
    with open_warehouse(settings):
        pass  # the warehouse and its lock file exist
    stale = settings.home_dir / "cache" / "versions" / "default.direction_h1.NOSUCH" / "3"
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"0")
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib\n"
        "from pipelines.config import get_settings\n"
        "from warehouse import open_warehouse\n"
        "with open_warehouse(get_settings()):\n"
        f"    pathlib.Path({str(ready)!r}).write_text('1')\n"
        "    time.sleep(60)\n")], env={**os.environ, "ALPHAOPS_HOME": str(alphaops_home)})
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), "the holder process never got the warehouse"
        report = health_report(settings, reap=False)
        lock = report["warehouse_lock"]
        assert lock["held"] and lock["pid"] == holder.pid and "open_warehouse" in lock["command"]
    finally:
        holder.kill()
        holder.wait()
    assert health_report(settings, reap=False)["warehouse_lock"]["held"] is False
    assert report["disk_bytes"]["warehouse"] > 0 and set(report["disk_bytes"]) >= {"warehouse", "mlflow.db"}
    assert {"path": str(stale), "reason": "the version no longer exists"} in report["stale_bundles"]


def test_doctor_command_prints_json(alphaops_home):
    cli = Path(sys.executable).with_name("alphaops")
    result = subprocess.run([str(cli), "doctor", "--json", "--no-reap"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ALPHAOPS_HOME": str(alphaops_home)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["orphans_ended"] == [] and report["warehouse_lock"]["embedded"] is True
