"""Converting deployed images for the cluster's container runtime (the shell side is convert.sh).

Before anything is converted, `check_tools` asks the cluster for the runtime's tools and versions
and refuses (DeploySetupError, exit 2) what mlops cannot run contained:
    apptainer     >= 1.0   (--no-mount; `bind-paths` from 1.2 on, older ones warn and keep site binds)
    singularity   SingularityCE / Singularity >= 3.7 (--no-mount, --env-file), or Apptainer's
                  `singularity` (>= 1.0)
    charliecloud  ch-run >= 0.25 (creates a bind's mount point), ch-convert, podman, unshare
    podman        podman
Apptainer/Singularity: `convert` first asks whether the runtime can mount a SIF with a squashfs
overlay here, with a probe image of a few KB (unprivileged Apptainer needs a /dev/fuse the user can
open; a setuid install does not). When it cannot, the image is converted to a sandbox directory
instead (no SIF is built) and deploy says why and how to fix it (report "form": "sandbox").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import runtime, scripts
from .errors import DeployError, DeploySetupError

if TYPE_CHECKING:
    from ..remote import Remote

MINIMUM = {"apptainer": (1, 0), "singularity-ce": (3, 7), "singularity": (3, 7), "ch-run": (0, 25)}
NOFUSE_FIX = (
    "unprivileged Apptainer mounts a SIF and its overlay with squashfuse, which needs /dev/fuse "
    "readable and writable by you. Fix: ask the cluster's admins for a /dev/fuse users can open "
    "(mode 0666, as most distributions ship it) or a setuid Apptainer; until then mlops runs sandbox "
    "directories (slower to deploy, more disk)"
)


@dataclass(frozen=True)
class Converted:
    """What `convert` did: the image in its form, whether anything was built, the no-FUSE line (or "")."""

    image: runtime.Image
    built: bool
    nofuse: str = ""


def _version(line: str) -> tuple[int, ...] | None:
    found = re.search(r"(\d+)\.(\d+)", line)
    return (int(found.group(1)), int(found.group(2))) if found else None


def check_versions(rt: str, answer: str) -> list[str]:
    """Problems with the tools `convert.sh version RT` reported (pure; [] = fine).

    `answer`: one "TOOL LINE" per tool, LINE being its `--version` line or "missing".
    """
    problems = []
    for line in answer.splitlines():
        tool, _, said = line.partition(" ")
        if said.strip() == "missing":
            problems.append(f"{tool} is not on the PATH of your login shell on the cluster")
            continue
        if tool in ("apptainer", "singularity"):
            name = (
                "apptainer" if "apptainer" in said else "singularity-ce" if "singularity-ce" in said else "singularity"
            )
        elif tool == "ch-run":
            name = tool
        else:
            continue
        found, need = _version(said), MINIMUM[name]
        if found is None or found < need:
            problems.append(f"{tool} says {said.strip()[:80]!r}; mlops needs {name} >= {'.'.join(map(str, need))}")
    return problems


def check_tools(session: Remote, rt: str) -> None:
    """Raises DeploySetupError naming every tool of runtime `rt` that is missing or too old on the cluster."""
    _, answer, _ = scripts.run(session, "convert.sh", "version", rt, timeout=120)
    problems = check_versions(rt, answer)
    if problems:
        raise DeploySetupError(
            f"mlops.toml clusters.NAME.runtime = {rt!r}: " + "; ".join(problems) + ". Fix: load or install it on the "
            "cluster (e.g. `module load`; a login shell's PATH is what mlops sees), or choose another runtime"
        )


def convert(session: Remote, image: runtime.Image, split: runtime.Split | None, gpu: bool = False) -> Converted:
    """Convert one deployed image (its layout at image.layout) for image.runtime; idempotent.

    Raises DeployError with the runtime's output when the conversion fails.
    """
    rt = image.runtime
    if rt == "podman":
        args = ["podman", image.store, image.key, image.slug]
    elif split is None:
        raise ValueError(f"{rt}: converting needs the image's split (lower image + code layer)")
    elif rt == "charliecloud":
        args = [rt, image.store, image.key, split.base_key, split.code_hex, str(int(gpu)), image.slug]
    else:
        args = [rt, image.store, image.key, split.base_key, split.code_hex, str(int(gpu))]
    rc, out, err = scripts.run(session, "convert.sh", *args, check=False)
    said = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    form = said.get("form", "").strip()
    if rc != 0 or form not in runtime.FORMS[rt]:
        raise DeployError(f"{image.stage}: converting for {rt} failed (exit {rc}):\n{err[-2000:]}")
    nofuse = "".join(c for c in said.get("nofuse", "") if c.isprintable()).strip()[:300]  # the cluster's words
    return Converted(image.with_form(form), said.get("built", "0").strip() == "1", nofuse)


def locate(session: Remote, images: dict[str, runtime.Image]) -> dict[str, runtime.Image | None]:
    """Each image in the form it was deployed in, or None when it is not converted on the cluster.

    Apptainer: the sif form when present (deploy removes it where it cannot run), else the sandbox.
    """
    if not images:
        return {}
    first = next(iter(images.values()))
    keys = {img.key: name for name, img in images.items()}
    _, out, _ = scripts.run(session, "convert.sh", "locate", first.runtime, first.store, first.slug, *keys, timeout=120)
    forms = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    found: dict[str, runtime.Image | None] = {}
    for key, name in keys.items():
        form = forms.get(key, "missing").strip()
        found[name] = images[name].with_form(form) if form in runtime.FORMS[images[name].runtime] else None
    return found
