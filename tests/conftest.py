"""Root of the template's tests: one folder per tier (support/tiers.py), shared helpers in support/.

Puts tests/ (for `support`) and the rendered project's src/ (for `mlops`) on sys.path, and refuses
a test file that lies outside every tier folder (scripts/test.sh would never run it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
for path in (TESTS, TESTS.parent / "{{cookiecutter.project_slug}}" / "src"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from support.tiers import tier_of  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Every test must lie in a tier folder, or scripts/test.sh would never run it."""
    outside = [item.nodeid for item in items if tier_of(item.path) is None]
    if outside:
        raise pytest.UsageError("tests outside the tier folders (tests/<tier>/): " + ", ".join(outside))
