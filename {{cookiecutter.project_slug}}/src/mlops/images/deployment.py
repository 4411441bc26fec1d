"""`mlops deploy`: put this commit's three images into the selected cluster's blob store, converted
for that cluster's runtime.

The flow (the store's protocol is mlops.images.store, conversion mlops.images.convert):
  1. locally, before the login's first remote command: every image of images/images.json read from
     the build's OCI layout and checked (DeploySetupError, exit 2: run `mlops build`);
  2. on the cluster: the runtime's tools and versions (DeploySetupError naming the tool and the fix);
  3. under the store's lock: the blobs the store lacks uploaded and verified, each image's layout
     assembled, each image converted (once per image id; Apptainer/Singularity/Charliecloud convert
     the lower image once per set of lower layers and add the code layer), and the deploy recorded.
One build serves every cluster: each cluster has its own store (<cluster_root>/images) and runtime.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import stages
from . import convert, layout, runtime, store
from .build import read_manifest
from .errors import DeploySetupError

if TYPE_CHECKING:
    from ..remote import Remote
    from ..settings import Settings

SPLIT_RUNTIMES = ("apptainer", "singularity", "charliecloud")  # lower image once + the code layer


@dataclass
class Local:
    """One image as deploy sees it locally: its blobs, and what to ship (plus the lower image's manifest)."""

    image: runtime.Image
    layout_dir: Path
    blobs: list[layout.Blob]  # manifest, config, layers
    ship: list[layout.Blob] = field(default_factory=list)
    split: runtime.Split | None = None
    base_manifest: layout.Blob | None = None


def local_images(cfg: Settings, manifest_path: Path) -> dict[str, Local]:
    """Every stage image of the build as the selected cluster gets it, read and checked locally
    (DeploySetupError names the fix). Call it before the login; `deploy` takes the result."""
    store_dir = f"{cfg.cluster_root}/images"
    manifest = read_manifest(manifest_path)
    rt = cfg.cluster.runtime
    try:
        runtime.check_runtime(rt)
    except ValueError as exc:
        raise DeploySetupError(str(exc)) from None
    images: dict[str, Local] = {}
    for stage in stages.STAGES:
        entry = manifest.get("images", {}).get(stage.name)
        if not entry or not entry.get("oci_ref"):
            raise DeploySetupError(f"{manifest_path}: no {stage.name} image in an OCI layout; run `mlops build` first")
        layout_dir = cfg.root / entry["layout"]
        blobs = layout.image_blobs(layout_dir, layout.resolve(layout_dir, entry["oci_ref"]))
        if blobs[1].digest != entry["digest"]:
            raise DeploySetupError(
                f"{layout_dir}: {entry['oci_ref']} is not image {entry['digest']}; run `mlops build`"
            )
        image = runtime.Image(stage.name, entry["digest"], store_dir, cfg.project.slug, rt)
        local = Local(image, layout_dir, blobs, list(blobs))
        if rt in SPLIT_RUNTIMES:
            base_key, extra = layout.lower_image(layout_dir, blobs)
            local.split, local.base_manifest = runtime.Split(base_key, blobs[-1].hex), extra[0]
            local.ship += extra
        images[stage.name] = local
    return images


def deploy(
    session: Remote,
    cfg: Settings,
    manifest_path: Path,
    out: TextIO = sys.stderr,
    images: dict[str, Local] | None = None,
) -> dict:
    """Make this commit's images present and converted on the selected cluster (`images`: what
    local_images returned before the login; else it is read now); returns the report:

    {"cluster": str, "store": str, "runtime": str, "bytes_uploaded": int, "seconds": float, "nofuse": str,
     "images": {stage: {"stage", "digest", "target", "form", "size", "blobs", "bytes_uploaded",
                        "uploaded": bool, "converted": bool, "convert_seconds": float}}}
    Raises DeploySetupError (exit 2) before any upload for a missing build or a missing/old runtime,
    DeployError (exit 1) when an upload does not verify or a conversion fails.
    """
    started = time.monotonic()
    root = cfg.cluster_root
    store_dir = f"{root}/images"
    rt = cfg.cluster.runtime
    if images is None or {(local.image.store, local.image.runtime) for local in images.values()} != {(store_dir, rt)}:
        images = local_images(cfg, manifest_path)  # (read for another cluster) before the first remote command
    convert.check_tools(session, rt)
    session.run(f"mkdir -p {shlex.quote(store_dir)} && chmod 700 {shlex.quote(root)} {shlex.quote(store_dir)}")
    results: dict[str, dict] = {}
    nofuse = ""
    with store.lock(session, store_dir):
        wanted = {b.hex: b for local in images.values() for b in local.ship}
        upload = store.missing(session, store_dir, list(wanted.values()))
        sent: dict[str, int] = {}
        for name, local in images.items():  # a blob two images share counts for the first
            mine = {b.hex: upload.pop(b.hex) for b in local.ship if b.hex in upload}
            ship = {b.hex: b for b in local.ship}
            sent[name] = store.send(session, store_dir, local.layout_dir, ship, mine, out) if mine else 0
        for name, local in images.items():
            store.assemble(session, store_dir, local.image.key, local.blobs[0])
            if local.split and local.base_manifest:
                store.assemble(session, store_dir, local.split.base_key, local.base_manifest)
            t0 = time.monotonic()
            gpu = cfg.cluster.use_gpu and name == "model"
            done = convert.convert(session, local.image, local.split, gpu=gpu)
            seconds = round(time.monotonic() - t0, 2)
            if done.nofuse and not nofuse:
                nofuse = done.nofuse
                print(f"  note: {rt} cannot mount images here ({done.nofuse}): {convert.NOFUSE_FIX}", file=out)
            results[name] = {
                "stage": name,
                "digest": local.image.digest,
                "target": done.image.target,
                "form": done.image.kind,
                "size": sum(b.size for b in local.blobs),
                "blobs": len(local.blobs),
                "bytes_uploaded": sent[name],
                "uploaded": sent[name] > 0,
                "converted": done.built,
                "convert_seconds": seconds if done.built else 0.0,
            }
            print(
                f"  {name:<6} {local.image.digest[:19]} {sent[name]:>13,} B uploaded"
                + (
                    f", converted for {rt} ({done.image.kind}) in {seconds:.1f}s"
                    if done.built
                    else ", already converted"
                ),
                file=out,
            )
        keys = [local.image.key for local in images.values()]
        keys += [local.split.base_key for local in images.values() if local.split]
        commit = str(read_manifest(manifest_path).get("commit", "unknown"))[:12]
        store.record(
            session, store_dir, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + commit, keys, list(wanted)
        )
    total = sum(r["bytes_uploaded"] for r in results.values())
    print(f"deployed to {cfg.cluster.name} ({store_dir}): {total:,} bytes uploaded", file=out)
    return {
        "cluster": cfg.cluster.name,
        "store": store_dir,
        "runtime": rt,
        "images": results,
        "bytes_uploaded": total,
        "nofuse": nofuse,
        "seconds": round(time.monotonic() - started, 2),
    }


def deployed(session: Remote, images: dict[str, runtime.Image]) -> dict[str, runtime.Image]:
    """The images of a run as deployed (each in its form); DeploySetupError when one is not on the cluster."""
    found = convert.locate(session, images)
    for name, image in found.items():
        if image is None:
            raise DeploySetupError(
                f"image {name} (digest {images[name].digest[:19]}) is not on the cluster for "
                f"{images[name].runtime}: run `mlops deploy` for this commit first"
            )
    return {name: image for name, image in found.items() if image is not None}


def write_report(report: dict, path: Path) -> None:
    """deploy's report as JSON at `path` (parents made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
