"""The environment `alphaops ui airflow` gives airflow standalone, and its refusal of a busy port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from pipelines.orchestration.airflow_runner import login_hint, port_is_free, standalone_environment
from pipelines.config import Settings


def test_standalone_finds_the_venvs_airflow_first_on_path(tmp_path, monkeypatch):
    """Standalone starts its components as `airflow …` from PATH: the interpreter's own bin dir
    (the venv's, not resolved through the python symlink) comes first, once."""
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", bin_dir, "/bin"]))
    env = standalone_environment(Settings(home=tmp_path), port=18123)
    path = env["PATH"].split(os.pathsep)
    assert path[0] == bin_dir and path.count(bin_dir) == 1 and path[1:] == ["/usr/bin", "/bin"]
    assert (Path(path[0]) / "airflow").exists()
    assert env["AIRFLOW__API__PORT"] == "18123" and env["AIRFLOW__API__BASE_URL"] == "http://localhost:18123"
    assert env["AIRFLOW_HOME"] == str(tmp_path.resolve() / "airflow")


def test_parallelism_defaults_to_the_cores_and_explicit_settings_are_kept(tmp_path, monkeypatch):
    from models.parallel import default_n_jobs

    monkeypatch.delenv("AIRFLOW__CORE__PARALLELISM", raising=False)
    monkeypatch.delenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", raising=False)
    settings = Settings(home=tmp_path)
    env = standalone_environment(settings)
    assert env["AIRFLOW__CORE__PARALLELISM"] == str(default_n_jobs())
    assert "no login" in login_hint(settings, env)

    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "3")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    env = standalone_environment(settings)
    assert env["AIRFLOW__CORE__PARALLELISM"] == "3"
    hint = login_hint(settings, env)
    assert "log in as admin" in hint and str(settings.airflow_home / "simple_auth_manager_passwords.json.generated") in hint


def test_a_busy_log_server_port_is_replaced_by_a_free_one(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", raising=False)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("0.0.0.0", 8793))
            holder.listen()
        except OSError:
            pass  # held already (another Airflow on this machine): the same case
        env = standalone_environment(Settings(home=tmp_path))
    port = int(env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"])
    assert port != 8793 and port_is_free(port)


def test_ui_airflow_on_a_busy_port_is_one_clear_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cli = Path(sys.executable).with_name("alphaops")
        result = subprocess.run([str(cli), "ui", "airflow", "--port", str(port)], capture_output=True, text=True,
                                timeout=120, env={**os.environ, "ALPHAOPS_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert f"error: port {port} is in use" in result.stderr and "--port" in result.stderr
