"""`mlops run --local` in rendered projects, for the project tier's tests of the local runner.

rendered(tmp_path_factory)      one rendered default project per session (never written into)
copy_of(rendered, dest)         a copy to run in (runs/ lands there)
mlops(project, *args, ...)      the project's own mlops in a subprocess (capture, or Popen)
only_run(project)               the one run directory under runs/
set_parameters(project, doc)    replace params/parameters.json
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .render import render


def rendered(tmp_path_factory, **answers) -> Path:
    return render(tmp_path_factory.mktemp("rendered"), **answers)


def copy_of(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest, symlinks=True, ignore=shutil.ignore_patterns("runs", ".venv", "__pycache__"))
    return dest


def env_for(project: Path, extra: dict | None = None) -> dict:
    """This environment without W&B settings of whoever runs the tests, with the project's package first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PYTHONPATH"] = str(project / "src")
    return {**env, **(extra or {})}


def mlops(project: Path, *args: str, env: dict | None = None, timeout: float = 900, popen: bool = False):
    argv = [sys.executable, "-m", "mlops", *args]
    if popen:
        return subprocess.Popen(
            argv, cwd=project, env=env or env_for(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    return subprocess.run(
        argv, cwd=project, env=env or env_for(project), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def only_run(project: Path) -> Path:
    (run,) = (project / "runs").iterdir()
    return run


def set_parameters(project: Path, doc: dict) -> None:
    (project / "params" / "parameters.json").write_text(json.dumps(doc))


def summary(run: Path) -> dict:
    return json.loads((run / "results" / "summary.json").read_text())
