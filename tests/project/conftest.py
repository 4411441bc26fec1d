"""Tier 'project' (support/tiers.py): every test in this folder is marked project."""

from support.tiers import mark_folder

pytest_collection_modifyitems = mark_folder(__file__)
