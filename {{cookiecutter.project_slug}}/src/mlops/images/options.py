"""The build options of `mlops build` (a leaf: imports nothing of mlops).

mlops.images.build.options() makes them from mlops.toml ([build]), CI variables and arguments;
the builders (mlops.images.builders) and the build read them. `mlops.settings.Settings` is the
project's settings; these are what one build run uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuildOptions:
    """What one `mlops build` uses (paths absolute, the builder checked)."""

    root: Path  # the project
    builder: str  # buildah | buildkit | kaniko | img (mlops.toml build.builder)
    base_image: str  # the stage images' BASE_IMAGE (build.base_image, or MLOPS_BASE_IMAGE)
    registry_image: str | None  # e.g. $CI_REGISTRY_IMAGE; None = do not push
    tag: str  # e.g. the commit sha
    out_dir: Path  # images/ (the OCI layout oci/ + images.json: the CI artifacts)
    cache_dir: Path  # .mlops-cache/images (the runner cache)
    extra_args: list[str]  # MLOPS_BUILD_EXTRA_ARGS, split like a shell
    commit: str
    source_url: str
