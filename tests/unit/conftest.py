"""Tier 'unit' (support/tiers.py): every test in this folder is marked unit."""

from support.tiers import mark_folder

pytest_collection_modifyitems = mark_folder(__file__)
