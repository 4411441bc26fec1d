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

from . import errors


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

# One ENTRYPOINT line in exec form; [ \t] and not \s, so that a match never runs across lines.
_ENTRYPOINT = re.compile(r"^[ \t]*ENTRYPOINT[ \t]+(\[.*\])[ \t]*$", re.MULTILINE)


def raw_entrypoint(root: Path, stage: Stage | str) -> list[str]:
    """The last exec-form `ENTRYPOINT ["...", ...]` of the stage's Dockerfile, as written (argv strings).

    The one reader of it: the local runner, the cluster runtimes (charliecloud must be told it) and
    the image builders. Raises errors.BadInput when there is none or it is not a JSON list of strings.
    """
    stage = BY_NAME[stage] if isinstance(stage, str) else stage
    text = (Path(root) / stage.dockerfile).read_text(encoding="utf-8")
    found = _ENTRYPOINT.findall(text)
    try:
        argv = json.loads(found[-1]) if found else None
    except json.JSONDecodeError:
        argv = None
    if not argv or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise errors.BadInput(
            f'{stage.dockerfile}: no exec-form ENTRYPOINT ["...", ...] line. Fix: write the entry point as a '
            'JSON list of strings, e.g. ENTRYPOINT ["python", "train.py"]'
        )
    return argv


def entrypoint(root: Path, stage: Stage) -> list[str]:
    """The stage's ENTRYPOINT as run on this machine: `python` is this interpreter, `mlops` is `python -m mlops`."""
    argv = raw_entrypoint(root, stage)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    elif argv and argv[0] == "mlops":
        argv[:1] = [sys.executable, "-m", "mlops"]
    return argv


# An image id as the manifest records it: the config digest (OCI image-spec, "sha256:" + 64 hex).
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def check_manifest(doc: object, source: str) -> None:
    """Check an images manifest ({"images": {stage: {"digest": ..., ...}}}) before anything uses it.

    Raises errors.Problems naming `images.<stage>.digest` for a missing or malformed digest, so the
    cluster verbs stop before a login.
    """
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, dict):
        raise errors.Problems(source, ['no "images" table. Fix: use the images.json written by `mlops build`'])
    problems = []
    for name, entry in images.items():
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            problems.append(f"images.{name}.digest: {digest!r} is not sha256:<64 hex digits>. "
                            "Fix: use the images.json written by `mlops build` (do not edit it)")  # fmt: skip
    if problems:
        raise errors.Problems(source, problems)
