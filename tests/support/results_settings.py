"""Settings as a rendered project has them (scheduler none), with the clusters' workdirs and [collect]
caps given: for the results tests and their child processes."""

from __future__ import annotations

import tomllib
from pathlib import Path

from mlops import settings

from .render import PROJECT_TEMPLATE, answers_for


def toml_text(workdirs: dict[str, Path], slug: str = "proj", **collect_caps) -> str:
    """mlops.toml with one [clusters.NAME] block per entry of `workdirs` (the first is the one the
    template asked for; the others are copies of it with their own name, host and workdir)."""
    import tomlkit

    first, *others = workdirs
    answers = {**answers_for({"project_name": slug, "scheduler": "none"}), "hpc_workdir": str(workdirs[first]),
               "cluster_name": first, "hpc_host": f"{first}.example.org"}  # fmt: skip
    doc = tomlkit.parse(settings.fill_toml((PROJECT_TEMPLATE / "mlops.toml").read_text(), answers))
    for name in others:
        block = tomlkit.table()
        for key, value in doc["clusters"][first].items():
            block[key] = value
        block["host"], block["workdir"] = f"{name}.example.org", str(workdirs[name])
        doc["clusters"][name] = block
    for key, value in collect_caps.items():
        doc["collect"][key] = value
    return tomlkit.dumps(doc)


def make(root: Path, workdir: Path, slug: str = "proj", **collect_caps) -> settings.Settings:
    """`settings.Settings` of a project `slug` in `root` whose one cluster's workdir is `workdir`."""
    return settings.from_data(tomllib.loads(toml_text({"hpc": workdir}, slug, **collect_caps)), root)
