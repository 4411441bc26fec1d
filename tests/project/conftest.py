"""Tier 'project' (support/tiers.py): every test in this folder is marked project.

Fixtures of the local-run modules: ``template_project`` (one render per module) and ``project`` (a
copy of it per test, so a sweep's runs/ directory lands in the test's tmp).
"""

import pytest

from support.local_run import copy_of, rendered
from support.tiers import mark_folder

pytest_collection_modifyitems = mark_folder(__file__)


@pytest.fixture(scope="module")
def template_project(tmp_path_factory):
    return rendered(tmp_path_factory)


@pytest.fixture
def project(template_project, tmp_path):
    """A copy of a rendered project, so the sweep's runs/ directory lands in tmp."""
    return copy_of(template_project, tmp_path / "project")
