"""Tier 'infra' (support/tiers.py): every test in this folder is marked infra; the real-service fixtures."""

from support.infra.fixtures import *  # noqa: F401,F403  (pytest finds fixtures by name)
from support.tiers import mark_folder

pytest_collection_modifyitems = mark_folder(__file__)
