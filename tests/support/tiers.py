"""The test tiers: one folder each under tests/, run in this order by scripts/test.sh (one pytest
process per folder). Each folder's conftest.py marks its tests with the folder's name, so
`pytest -m e2e` still selects a tier, and a test outside every tier folder is a collection error."""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "render", "project", "pipeline", "infra", "e2e", "security", "update")
TESTS = Path(__file__).resolve().parents[1]


def tier_of(path: Path) -> str | None:
    """The tier folder a test file lies in (tests/<tier>/...), else None."""
    try:
        first = Path(path).resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return first if first in TIERS else None


def mark_folder(conftest_file: str):
    """A pytest_collection_modifyitems hook for tests/<tier>/conftest.py: marks that folder's tests."""
    tier = Path(conftest_file).resolve().parent.name
    assert tier in TIERS, f"{conftest_file}: not a tier folder"

    def hook(items: list[pytest.Item]) -> None:
        for item in items:
            if tier_of(item.path) == tier:
                item.add_marker(getattr(pytest.mark, tier))

    return hook
