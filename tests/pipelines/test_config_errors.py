"""A bad ALPHAOPS_* variable is named in one line (never 'N validation errors for Settings')."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import SettingsInvalid, get_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("var", "value", "message"), [
    ("ALPHAOPS_TRIALS", "0", "invalid setting ALPHAOPS_TRIALS='0': Input should be greater than or equal to 1"),
    ("ALPHAOPS_CANARY_SHARE", "lots", "invalid setting ALPHAOPS_CANARY_SHARE='lots': Input should be a valid number"),
    ("ALPHAOPS_SYMBOLS", "SPX,SYN1", "invalid setting ALPHAOPS_SYMBOLS: cannot parse its value (lists are JSON"),
    ("ALPHAOPS_SERVE_ROUTING_HEADER", "not a header", "invalid setting ALPHAOPS_SERVE_ROUTING_HEADER='not a header'"),
    ("ALPHAOPS_SERVE_MAX_BODY_BYTES", "10", "invalid setting ALPHAOPS_SERVE_MAX_BODY_BYTES='10': Input should be greater than or equal to 1024"),
])
def test_a_bad_variable_is_named(monkeypatch, var: str, value: str, message: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsInvalid) as err:
        get_settings()
    assert str(err.value).startswith(message), str(err.value)
    assert "validation error" not in str(err.value) and "\n" not in str(err.value)


def test_api_keys_parse_and_bad_keys_are_named_without_echoing_them(monkeypatch, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# desks\ndesk-b:bbbbbbbbbbbbbbbbbbbb\n\n")
    monkeypatch.setenv("ALPHAOPS_SERVE_API_KEYS", "desk-a:aaaaaaaaaaaaaaaaaaaa, bare-key-0123456789")
    monkeypatch.setenv("ALPHAOPS_SERVE_API_KEYS_FILE", str(keys_file))
    keys = get_settings().serve_keys()
    assert keys["desk-a"] == "a" * 20 and keys["desk-b"] == "b" * 20
    assert "bare-key-0123456789" in keys.values() and len(keys) == 3
    assert "aaaa" not in repr(get_settings())  # a secret in the settings' repr
    monkeypatch.setenv("ALPHAOPS_SERVE_API_KEYS", "desk-a:short")
    with pytest.raises(ValueError, match=r"^ALPHAOPS_SERVE_API_KEYS: the API key of 'desk-a' is shorter than 16") as err:
        get_settings().serve_keys()
    assert "short" not in str(err.value).replace("shorter", "")
    monkeypatch.setenv("ALPHAOPS_SERVE_API_KEYS", "desk-b:cccccccccccccccccccc")
    with pytest.raises(ValueError, match="'desk-b' has more than one API key"):
        get_settings().serve_keys()


def test_cli_prints_the_variable_in_one_line(alphaops_home: Path) -> None:
    cli = Path(sys.executable).with_name("alphaops")
    env = {"PATH": str(Path(sys.executable).parent), "ALPHAOPS_HOME": str(alphaops_home), "ALPHAOPS_TRIALS": "0"}
    result = subprocess.run([str(cli), "models"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: invalid setting ALPHAOPS_TRIALS='0': Input should be greater than or equal to 1"]
