"""`import serving` must stay light: no Airflow, MLflow, pandas, sklearn, torch or fastapi.

Every module in serving/ imports only the standard library, numpy, onnxruntime and serving
itself (the REST app, which needs fastapi, is pipelines.app.rest).
"""

from __future__ import annotations

import ast
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
    "pydantic",
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


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every import in a module, wherever it stands (inside
    functions too), and of ``importlib.import_module`` / ``__import__`` calls. A relative
    import is the package itself; a call with a computed name is ``<dynamic>``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            top = "serving" if node.level else (node.module or "").split(".")[0]
            found.append((node.lineno, top))
        elif isinstance(node, ast.Call):
            f = node.func
            name = getattr(f, "id", None) or getattr(f, "attr", "")  # f() or module.f()
            if name in ("import_module", "__import__"):
                arg = node.args[0] if node.args else None
                literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                found.append((node.lineno, arg.value.split(".")[0] if literal else "<dynamic>"))
    return found


def _forbidden_imports(folder: Path) -> list[str]:
    """Imports in ``folder``'s modules of anything but the standard library, numpy,
    onnxruntime and serving itself."""
    allowed = set(sys.stdlib_module_names) | {"__future__", "numpy", "onnxruntime", "serving"}
    bad = []
    for path in sorted(folder.rglob("*.py")):
        bad += [f"{path.name}:{line}: {top}" for line, top in _imports(path) if top not in allowed]
    return bad


def test_serving_modules_import_only_stdlib_numpy_onnxruntime() -> None:
    assert _forbidden_imports(ROOT / "serving") == []


def test_the_import_check_finds_a_forbidden_import(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text(
        "from __future__ import annotations\nimport json, numpy as np\n"
        "from . import errors\nfrom serving.schema import Schema\nimport onnxruntime\n"
    )
    (tmp_path / "bad.py").write_text(
        "import os\n\ndef load():\n    import pandas\n    from sklearn.base import clone\n"
        "    import importlib\n    importlib.import_module('torch.nn')\n"
        "    __import__(os.environ['X'])\n"
    )
    (tmp_path / "http.py").write_text(
        "import fastapi\nfrom pydantic import BaseModel\nimport mlflow\n"
    )
    assert _forbidden_imports(tmp_path) == [
        "bad.py:4: pandas",
        "bad.py:5: sklearn",
        "bad.py:7: torch",
        "bad.py:8: <dynamic>",
        "http.py:1: fastapi",
        "http.py:2: pydantic",
        "http.py:3: mlflow",
    ]
