"""`mlops build` and `mlops images keys|show|prune`: the three images (room: mlops.images)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import images
from ..cluster import verbs as cluster_verbs
from . import Verbs


def register(verbs: Verbs) -> None:
    p = verbs.add("build", _build, "build, save and push the images (unchanged ones come from the cache)")
    p.add_argument("images", nargs="*", help="only these images (default: all stages)")
    p.add_argument(
        "--builder",
        default=os.environ.get("MLOPS_BUILDER") or None,
        help="must match mlops.toml build.builder (default: $MLOPS_BUILDER, the CI input)",
    )
    p.add_argument("--no-push", action="store_true", help="only build and save the OCI layout (images/oci/)")
    p.add_argument(
        "--registry-image",
        default=None,
        help="push to REF/<name>:TAG (default: $MLOPS_REGISTRY_IMAGE, else $CI_REGISTRY_IMAGE)",
    )
    p.add_argument("--tag", default=None, help="image tag (default: $CI_COMMIT_SHA, else the git commit)")
    p.add_argument("--out", type=Path, default=None, help="OCI layout + images.json (default: images/)")
    p.add_argument("--cache", type=Path, default=None, help="build cache (default: .mlops-cache/images/)")
    p.add_argument("--force", action="store_true", help="rebuild even when the cache has the image")

    group = verbs.group("images", "inspect image input keys and the images manifest; prune the cluster's store")
    group.add("keys", _keys, "print each image's input key (what decides a rebuild)")
    p = group.add("show", _show, "print images/images.json")
    p.add_argument("--manifest", type=Path, default=Path("images/images.json"))
    p = group.add(
        "prune",
        _prune,
        "remove from the cluster the image blobs that neither the last N commits nor a queued or running run use",
        cluster=True,
    )
    p.add_argument("--keep", type=int, default=None, help="commits to keep (default: mlops.toml images.keep, 5)")


def _build(args, s) -> None:
    options = images.options(
        builder=args.builder,
        push=not args.no_push,
        registry_image=args.registry_image,
        tag=args.tag,
        out_dir=args.out,
        cache_dir=args.cache,
    )
    images.build(options, names=args.images, force=args.force)


def _keys(args, s) -> None:
    for name, key in images.keys(images.options(push=False)).items():
        print(f"{name}\t{key}")


def _show(args, s) -> None:
    print(json.dumps(images.read_manifest(args.manifest), indent=1, sort_keys=True))


def _prune(args, s) -> None:
    cluster_verbs.prune(s, args.keep)
