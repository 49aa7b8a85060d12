"""The REST app's tests (test_rest*.py) serve the bundles that tests/serving builds: its fixtures
are loaded here from tests/serving/conftest.py, one definition for both folders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SERVING_CONFTEST = Path(__file__).resolve().parents[2] / "serving" / "conftest.py"
_spec = importlib.util.spec_from_file_location("serving_test_fixtures", _SERVING_CONFTEST)
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

bundles_root = _fixtures.bundles_root
clf_bundle = _fixtures.clf_bundle
clf_bundle_v2 = _fixtures.clf_bundle_v2
clf = _fixtures.clf
rows = _fixtures.rows
