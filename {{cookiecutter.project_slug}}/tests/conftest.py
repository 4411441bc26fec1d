"""Helpers for this project's tests: run the stages exactly as `mlops run --local` does."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_stage(name: str, project_dir: Path, extra_env: dict | None = None, check: bool = True):
    """Run a stage's Dockerfile ENTRYPOINT in its folder with PROJECT_DIR pointing at project_dir."""
    from mlops import stages

    argv = stages.entrypoint(ROOT, stages.BY_NAME[name])
    env = {
        **os.environ,
        "PROJECT_DIR": str(project_dir),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        **(extra_env or {}),
    }
    return subprocess.run(argv, cwd=ROOT / name, env=env, capture_output=True, text=True, check=check)


@pytest.fixture
def project_dir(tmp_path):
    """An empty run directory, as the containers see /project."""
    return tmp_path / "run"
