"""Deprecated: the old name of `mlops.settings`, kept until every room imports settings directly.

`config.load()` returns `settings.Settings`, which still answers the old dict-like view
(`cfg["cluster"].get("runtime")`, `cfg.slug`, `cfg.use_gpu`). The lead removes this module after
the ssh/, cluster/, images/ and results/ rooms are merged.
"""

from __future__ import annotations

from .errors import BadInput as ConfigError  # noqa: F401 - the old exception name
from .settings import FILENAME, Settings, find_root, load  # noqa: F401

Config = Settings
