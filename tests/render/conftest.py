"""Tier 'render' (support/tiers.py): every test in this folder is marked render."""

from support.tiers import mark_folder

pytest_collection_modifyitems = mark_folder(__file__)
