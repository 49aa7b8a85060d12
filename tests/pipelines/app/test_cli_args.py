"""Arguments that name nothing, or nothing valid, are refused in one line before any work starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CLI = Path(sys.executable).with_name("alphaops")


@pytest.mark.parametrize(("args", "line"), [
    (["run", "--symbols", ","], "error: --symbols ',' names nothing; give at least one name, or leave --symbols out "
                                "for the defaults"),
    (["run", "--families", " , "], "error: --families ' , ' names nothing"),
    (["run", "--symbols", "SPX,SYN 1"], "error: --symbols 'SYN 1' is not a symbol"),
    (["export", "direction_h1.SYN1", "out"], "error: expected NAME@ALIAS or NAME@VERSION"),
])
def test_refused_in_one_line(args: list[str], line: str, alphaops_home: Path) -> None:
    result = subprocess.run([str(CLI), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), result.stderr
