"""Input keys: what decides whether a stage image must be rebuilt (`mlops images keys`).

The key is SHA-256 over the stage's inputs (Dockerfile + context files, names, executable bits,
contents) and the base image. Why not GitLab's `cache:key:files`: that hashes at most two files and
no directories, while an image depends on its whole context.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .. import stages
from .errors import BuildError

KEY_VERSION = "mlops-images-2"  # bump when the key recipe or the artifact shape changes: old cache entries miss
_SKIP_PARTS = {"__pycache__", ".git", ".pytest_cache", ".mypy_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def _input_files(root: Path, stage: stages.Stage) -> list[Path]:
    files: set[Path] = set()
    paths = [*stage.inputs, stage.dockerfile]
    ignore = Path(stage.context) / ".dockerignore"  # it decides what the context holds
    if (root / ignore).is_file():
        paths.append(str(ignore))
    for rel in paths:
        path = root / rel
        if path.is_file():
            files.add(path)
        elif path.is_dir():
            for sub in path.rglob("*"):
                if (
                    sub.is_file()
                    and not (_SKIP_PARTS & set(sub.relative_to(root).parts))
                    and not sub.name.endswith(_SKIP_SUFFIXES)
                ):
                    files.add(sub)
        else:
            raise BuildError(f"{stage.name}: input {rel} does not exist (stages.STAGES lists it)", bad_input=True)
    return sorted(files)


def input_key(root: Path, stage: stages.Stage, base_image: str) -> str:
    """SHA-256 over the image's inputs: file names, executable bits and contents, plus the base image."""
    digest = hashlib.sha256(f"{KEY_VERSION}\0{stage.name}\0{stage.context}\0{base_image}\0".encode())
    for path in _input_files(root, stage):
        rel = path.relative_to(root).as_posix()
        executable = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"{rel}\0{executable}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
