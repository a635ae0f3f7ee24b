"""The experiments' tests: the drivers import by name (as ``python experiments/NAME.py`` runs them), and
the package tests' fixtures (a small corpus, tiny models) are shared, not copied."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "experiments"), str(ROOT / "tests")]

_spec = importlib.util.spec_from_file_location("tangpoem_test_fixtures", ROOT / "tests" / "conftest.py")
assert _spec and _spec.loader
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
globals().update({name: value for name, value in vars(_fixtures).items() if not name.startswith("__")})
