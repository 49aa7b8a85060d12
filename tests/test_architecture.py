"""The import rules of docs/architecture.md, checked on the source with ``ast``.

- ``features`` imports nothing of the project but itself;
- ``warehouse`` imports of the project only ``features`` (the column definitions) and, of
  ``pipelines``, only ``pipelines.config`` under ``TYPE_CHECKING`` (for the ``Settings`` type);
- inside ``pipelines``, each subpackage imports only the layers below it (:data:`LAYERS`);
- no import circles among the project's modules (module-level imports);
- ``serving``'s rule (the standard library, numpy, onnxruntime and itself) is checked by
  tests/serving/test_serving_isolation.py, whose import parser this file reuses.

Imports inside functions count for the first two rules (``importlib.import_module`` too).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dags", "features", "models", "pipelines", "registry", "serving", "warehouse")
# pipelines' layers, lowest first: a module may import its own subpackage and lower layers.
# "" is the top level (config, memory, tracking, values).
LAYERS = {"": 0, "evaluation": 1, "ingest": 1, "orchestration": 1, "live": 2, "steps": 3, "app": 4}


def _serving_rules():
    """tests/serving/test_serving_isolation.py, loaded as a module (its ``_imports`` parser)."""
    path = ROOT / "tests" / "serving" / "test_serving_isolation.py"
    spec = importlib.util.spec_from_file_location("_serving_isolation_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_imports(path: Path, root: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, under TYPE_CHECKING) of every import of a project package in
    ``path``, wherever it stands; ``from pkg import name`` names ``pkg.name`` when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_checking = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking |= {id(n) for child in node.body for n in ast.walk(child)}
    package = _module_name(root, path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(root, path)
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if _is_module(root, f"{base}.{a.name}") else base for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        found += [(node.lineno, name, id(node) in type_checking) for name in dict.fromkeys(names)
                  if name.split(".")[0] in _packages(root)]
    return found


def _packages(root: Path) -> set[str]:
    return {p for p in PACKAGES if (root / p).is_dir()} | {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}


def _is_module(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _sources(root: Path, package: str) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)


def _foreign_imports(root: Path, package: str, allowed: set[str] = frozenset(),
                     type_checking_only: set[str] = frozenset()) -> list[str]:
    """Imports in ``package`` of other project packages, except ``allowed`` modules and
    ``type_checking_only`` modules imported under TYPE_CHECKING."""
    bad = []
    for path in _sources(root, package):
        for line, name, typing_only in _project_imports(path, root):
            top = name.split(".")[0]
            if top == package or name in allowed or (typing_only and name in type_checking_only):
                continue
            bad.append(f"{path.relative_to(root).as_posix()}:{line}: {name}")
    return bad


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports at module level (not inside functions, not
    under TYPE_CHECKING): the imports that run when the module is imported."""
    graph: dict[str, set[str]] = {}
    for package in sorted(_packages(root)):
        for path in _sources(root, package):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            module_level = set()
            for node in tree.body:
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    continue
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    continue
                module_level |= {id(n) for n in ast.walk(node)}
            found = [(line, name) for line, name, typing_only in _project_imports(path, root) if not typing_only]
            lines = {n.lineno for n in ast.walk(tree) if id(n) in module_level and isinstance(n, ast.Import | ast.ImportFrom | ast.Call)}
            graph[_module_name(root, path)] = {name for line, name in found if line in lines} - {_module_name(root, path)}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (or a module importing itself), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(cycles)


def test_features_imports_nothing_of_the_project() -> None:
    assert _foreign_imports(ROOT, "features") == []


def test_warehouse_imports_only_features_and_the_settings_type() -> None:
    bad = _foreign_imports(ROOT, "warehouse", type_checking_only={"pipelines.config"})
    assert [b for b in bad if not b.split(": ")[1].startswith("features")] == []


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def layer_violations(root: Path) -> list[str]:
    """Imports (anywhere in a module) of a pipelines subpackage at the same or a higher layer."""
    bad = []
    for path in _sources(root, "pipelines"):
        here = _layer(_module_name(root, path))
        for line, name, _ in _project_imports(path, root):
            there = _layer(name) if name.startswith("pipelines.") else here
            if there != here and LAYERS[there] >= LAYERS[here]:
                bad.append(f"{path.relative_to(root).as_posix()}:{line}: {name}")
    return bad


def test_pipelines_subpackages_import_only_lower_layers() -> None:
    assert set(LAYERS) - {""} == {p.name for p in (ROOT / "pipelines").iterdir() if (p / "__init__.py").is_file()}
    assert layer_violations(ROOT) == []


def test_no_import_circles() -> None:
    assert find_cycles(import_graph(ROOT)) == []


def test_serving_rule_is_checked_by_the_serving_tests() -> None:
    rules = _serving_rules()
    assert rules._forbidden_imports(ROOT / "serving") == []


def test_the_checks_find_a_planted_cycle_and_a_forbidden_import(tmp_path: Path) -> None:
    for package in ("features", "warehouse", "pipelines"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "config.py").write_text("from pipelines import steps\n")
    (tmp_path / "pipelines" / "steps.py").write_text("import pipelines.config\n")
    (tmp_path / "features" / "core.py").write_text("def f():\n    from pipelines.config import X\n")
    (tmp_path / "warehouse" / "db.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipelines.config import Settings\n"
        "def g():\n    import pipelines.steps\n")
    assert find_cycles(import_graph(tmp_path)) == [["pipelines.config", "pipelines.steps"]]
    (tmp_path / "pipelines" / "ingest").mkdir()
    (tmp_path / "pipelines" / "ingest" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "ingest" / "files.py").write_text("def h():\n    from pipelines.live import monitor\n")
    (tmp_path / "pipelines" / "live").mkdir()
    (tmp_path / "pipelines" / "live" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "live" / "monitor.py").write_text("from pipelines.ingest import files\n")
    assert layer_violations(tmp_path) == ["pipelines/config.py:1: pipelines.steps",
                                          "pipelines/ingest/files.py:2: pipelines.live.monitor"]
    assert _foreign_imports(tmp_path, "features") == ["features/core.py:2: pipelines.config"]
    assert _foreign_imports(tmp_path, "warehouse", type_checking_only={"pipelines.config"}) == [
        "warehouse/db.py:5: pipelines.steps"]


def test_longest_first_names_existing_test_files():
    from tests.conftest import LONGEST_FIRST

    root = Path(__file__).resolve().parent.parent
    missing = [path for path in LONGEST_FIRST if not (root / path).is_file()]
    assert not missing, f"tests/conftest.py LONGEST_FIRST names files that do not exist: {missing}"
