"""`import serving` must stay light: no Airflow, MLflow, pandas, sklearn, torch or fastapi."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = [
    "airflow",
    "mlflow",
    "pandas",
    "sklearn",
    "torch",
    "fastapi",
    "lightgbm",
    "onnx",
    "polars",
    "serving.http",
]


def _loaded_after(code: str) -> dict:
    probe = (
        "import sys, json\n" + code + "\n"
        f"print(json.dumps({{m: m in sys.modules for m in {FORBIDDEN!r}}}))\n"
        "import serving; print(json.dumps(serving.__file__))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    return {"modules": json.loads(out[0]), "file": json.loads(out[1])}


def test_import_serving_pulls_in_nothing_heavy() -> None:
    info = _loaded_after(
        "import serving\nfrom serving import Predictor, CanaryRouter, AliasWatcher, PredictionLog"
    )
    assert info["file"].endswith("serving/__init__.py")  # the real package, not a namespace
    assert [m for m, loaded in info["modules"].items() if loaded] == []


def test_only_stdlib_numpy_onnxruntime_in_serving_sources() -> None:
    allowed_third_party = {"numpy", "onnxruntime"}
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((ROOT / "serving").glob("*.py")):
        extra = {"fastapi", "pydantic"} if path.name == "http.py" else set()
        for line in path.read_text().splitlines():
            words = line.split()
            if (
                len(words) >= 2
                and words[0] in ("import", "from")
                and not line.startswith((" ", "\t"))
            ):
                top = words[1].split(".")[0]
                if top in ("__future__", "serving"):
                    continue
                assert top in stdlib | allowed_third_party | extra, f"{path.name}: {line}"
