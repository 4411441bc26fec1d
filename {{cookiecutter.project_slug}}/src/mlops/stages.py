"""The three stages and their images: the one list of them (params, data, model).

Each stage is a folder with a Dockerfile and its code. The Dockerfile's ENTRYPOINT is the stage's
entry point everywhere: in the image, on the cluster, and in `mlops run --local`, which reads it
from the Dockerfile instead of restating it.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stage:
    name: str
    context: str  # build context, relative to the project root
    inputs: tuple[str, ...]  # paths whose content decides whether the image must be rebuilt

    @property
    def dockerfile(self) -> str:
        return f"{self.name}/Dockerfile"


STAGES = (
    # The params image runs `mlops params expand`, so it is built from the project root with the package.
    Stage("params", ".", ("params", "src", "pyproject.toml")),
    Stage("data", "data", ("data",)),
    Stage("model", "model", ("model",)),
)
BY_NAME = {stage.name: stage for stage in STAGES}

_ENTRYPOINT = re.compile(r"^\s*ENTRYPOINT\s+(\[.*\])\s*$", re.MULTILINE)


def entrypoint(root: Path, stage: Stage) -> list[str]:
    """The exec-form ENTRYPOINT of a stage's Dockerfile, with `python` meaning this interpreter."""
    text = (root / stage.dockerfile).read_text()
    match = _ENTRYPOINT.findall(text)
    if not match:
        raise ValueError(f'{stage.dockerfile}: no exec-form ENTRYPOINT ["..."] line')
    argv = json.loads(match[-1])
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    elif argv and argv[0] == "mlops":
        argv[:1] = [sys.executable, "-m", "mlops"]
    return argv
