"""Settings as a rendered project has them (scheduler none), with the cluster's workdir and [collect]
caps given: for the results tests and their child processes."""

from __future__ import annotations

import tomllib
from pathlib import Path

from mlops import settings

from .render import PROJECT_TEMPLATE, answers_for


def make(root: Path, workdir: Path, slug: str = "proj", **collect_caps) -> settings.Settings:
    """`settings.Settings` of a project `slug` in `root` whose cluster workdir is `workdir`."""
    answers = {**answers_for({"project_name": slug, "scheduler": "none"}), "hpc_workdir": str(workdir)}
    data = tomllib.loads(settings.fill_toml((PROJECT_TEMPLATE / "mlops.toml").read_text(), answers))
    data["collect"].update(collect_caps)
    return settings.from_data(data, root)
