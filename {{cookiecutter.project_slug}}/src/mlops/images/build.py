"""`mlops build`: build, store and push the stage images (params, data, model) without a daemon.

For each stage of mlops.stages.STAGES:
  1. its input key (mlops.images.keys) = SHA-256 over the stage's inputs and the base image;
  2. if the build cache (an OCI layout in <cache>/oci, refs "<name>-<key>") holds that key, reuse
     it: no rebuild, and the registry tag for this commit is a manifest copy (no blob moves);
  3. otherwise build it with the chosen builder (mlops.images.builders: a docker-archive tar), store
     its blobs in the cache layout (mlops.images.layout) and push `<registry image>/<name>:<tag>`.
The artifact is one OCI layout `images/oci/` holding the three images (refs "params", "data",
"model"; a blob they share is stored once) and the manifest `images/images.json`, which
`mlops deploy` reads:

    {"version": 2, "commit": ..., "builder": ..., "base_image": ...,
     "images": {"<name>": {"layout": "images/oci", "oci_ref": "<name>",
                           "manifest_digest": "sha256:<OCI manifest>", "digest": "sha256:<image id>",
                           "size": <bytes of its blobs>, "layers": ["sha256:..", ...],
                           "input_key": "<sha256 hex>", "registry_ref": "<repo>/<name>:<tag>" | null,
                           "registry_digest": "sha256:<registry manifest digest>" | null,
                           "archive_ref": "<name:tag the builder gave it>", "built": true|false,
                           "built_commit": "<commit that built it>", "seconds": 1.2}}}

`digest` is the image id (the config digest): the same in the layout, the registry and a runtime's
store, so deploy keys the cluster's copies by it. Read it: `podman pull oci:images/oci:model`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import urllib.error
from pathlib import Path
from typing import TextIO

from .. import rundir, settings, stages
from . import layout
from .builders import BUILDER_CLASSES, BUILDERS, Target
from .errors import BuildError
from .keys import input_key
from .options import BuildOptions
from .registry import Registry, split_ref

MANIFEST = "images.json"
LAYOUT = "oci"  # images/oci/ (artifact) and <cache>/oci/ (runner cache)
# Environment knobs (documented in the README's pipeline section).
ENV_BASE_IMAGE = "MLOPS_BASE_IMAGE"  # e.g. a registry mirror / GitLab dependency proxy
ENV_EXTRA_ARGS = "MLOPS_BUILD_EXTRA_ARGS"  # extra builder arguments, e.g. a CA bundle mount


def options(
    root: Path | None = None,
    builder: str | None = None,
    push: bool = True,
    registry_image: str | None = None,
    tag: str | None = None,
    out_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> BuildOptions:
    """The build options from mlops.toml, overridden by CI variables and arguments (in that order).

    Raises BuildError(bad_input=True) naming the field for a builder that differs from mlops.toml, an
    unknown builder, an empty base image or unparsable extra arguments.
    """
    cfg = settings.load(root)
    configured = cfg.build.builder
    if builder and builder != configured:
        raise BuildError(
            f"builder {builder!r} (the CI input / --builder) differs from mlops.toml "
            f"build.builder = {configured!r}. Fix: make them the same (mlops.toml is "
            f"what the project uses; the CI input only picks the job image)",
            bad_input=True,
        )
    builder = builder or configured
    if builder not in BUILDERS:
        raise BuildError(f"mlops.toml build.builder = {builder!r} is not one of {', '.join(BUILDERS)}", bad_input=True)
    commit = rundir.git_commit(cfg.root)
    registry_image = (
        registry_image or os.environ.get("MLOPS_REGISTRY_IMAGE") or os.environ.get("CI_REGISTRY_IMAGE") or None
    )
    if not push:
        registry_image = None
    base_image = os.environ.get(ENV_BASE_IMAGE) or cfg.build.base_image
    if not base_image:
        raise BuildError('mlops.toml build.base_image is empty. Fix: set it, e.g. "python:3.11-slim"', bad_input=True)
    try:
        extra = shlex.split(os.environ.get(ENV_EXTRA_ARGS, ""))
    except ValueError as exc:
        raise BuildError(f"{ENV_EXTRA_ARGS}: {exc}. Fix: quote it as you would in a shell", bad_input=True) from None
    return BuildOptions(
        root=cfg.root,
        builder=builder,
        base_image=base_image,
        registry_image=registry_image.rstrip("/") if registry_image else None,
        tag=tag or os.environ.get("CI_COMMIT_SHA") or commit[:12] or "latest",
        out_dir=Path(out_dir or cfg.root / "images"),
        cache_dir=Path(cache_dir or cfg.root / ".mlops-cache" / "images"),
        extra_args=extra,
        commit=commit,
        source_url=os.environ.get("CI_PROJECT_URL", "unknown"),
    )


# ---------------------------------------------------------------- the build


def _rel(s: BuildOptions, path: Path) -> str:
    return path.relative_to(s.root).as_posix() if path.is_relative_to(s.root) else str(path)


def _cached(s: BuildOptions, name: str, key: str) -> dict | None:
    """The cache entry of `key` when its meta and every blob are present, else None."""
    meta = s.cache_dir / name / f"{key}.json"
    if not meta.is_file():
        return None
    entry = json.loads(meta.read_text())
    try:
        blobs = layout.image_blobs(s.cache_dir / LAYOUT, layout.resolve(s.cache_dir / LAYOUT, f"{name}-{key}"))
    except (BuildError, ValueError, KeyError):
        return None
    return entry if all(layout.blob_path(s.cache_dir / LAYOUT, b.digest).is_file() for b in blobs) else None


def _prune_cache(s: BuildOptions, name: str, keep: str) -> None:
    """Keep one entry per image (the current one): the cache must not grow with every change."""
    for path in (s.cache_dir / name).glob("*.json"):
        if path.stem != keep:
            path.unlink(missing_ok=True)
    cache = s.cache_dir / LAYOUT
    index_path = cache / "index.json"
    index = json.loads(index_path.read_text())
    index["manifests"] = [
        m
        for m in index["manifests"]
        if not (
            m["annotations"][layout.REF_NAME].startswith(f"{name}-")
            and m["annotations"][layout.REF_NAME] != f"{name}-{keep}"
        )
    ]
    layout._write_atomic(index_path, layout._dumps(index))
    layout.prune(cache)


def build(s: BuildOptions, names: list[str] | None = None, force: bool = False, out: TextIO = sys.stderr) -> dict:
    """Build/reuse, store and push the images; write the layout and manifest under s.out_dir, return the manifest."""
    unknown = [n for n in names or [] if n not in stages.BY_NAME]
    if unknown:
        raise BuildError(
            f"unknown image(s) {', '.join(unknown)}: choose from {', '.join(stages.BY_NAME)}", bad_input=True
        )
    selected = [st for st in stages.STAGES if not names or st.name in names]
    builder = BUILDER_CLASSES[s.builder](s)
    registry = Registry(split_ref(s.registry_image + "/x:y")[0]) if s.registry_image else None
    s.out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = s.out_dir / MANIFEST
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    kept = {k: v for k, v in previous.get("images", {}).items() if v.get("oci_ref")} if names else {}
    manifest: dict = {
        "version": 2,
        "commit": s.commit,
        "builder": s.builder,
        "base_image": s.base_image,
        "images": kept,
    }
    if s.registry_image:
        builder.login()
    slug = settings.load(s.root).project.slug
    cache = s.cache_dir / LAYOUT
    layout.init(cache)
    for stage in selected:
        started = time.monotonic()
        key = input_key(s.root, stage, s.base_image)
        remote = f"{s.registry_image}/{stage.name}:{s.tag}" if s.registry_image else None
        entry = None if force else _cached(s, stage.name, key)
        if entry is not None:
            entry = _reuse(s, registry, stage, remote, entry, out)
        if entry is None:
            entry = _build_one(s, builder, registry, stage, key, slug, remote, out)
            (s.cache_dir / stage.name).mkdir(parents=True, exist_ok=True)
            (s.cache_dir / stage.name / f"{key}.json").write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
            _prune_cache(s, stage.name, key)
        entry.update(
            layout=_rel(s, s.out_dir / LAYOUT),
            oci_ref=stage.name,
            input_key=key,
            seconds=round(time.monotonic() - started, 2),
        )
        manifest["images"][stage.name] = entry
        what = "built" if entry["built"] else "cached"
        print(
            f"{stage.name:<7} {what:<6} {entry['seconds']:7.1f}s  key {key[:12]}  {entry['digest'][:19]}"
            f"  {entry['size']:>13,} B  {entry['registry_ref'] or '(not pushed)'}",
            file=out,
            flush=True,
        )
    _write_artifact(s, manifest)
    return manifest


def _write_artifact(s: BuildOptions, manifest: dict) -> None:
    """images/oci/ = exactly this commit's images (blobs hard-linked from the cache), then images.json."""
    artifact = s.out_dir / LAYOUT
    tmp = Path(tempfile.mkdtemp(prefix=".oci-", dir=s.out_dir))
    try:
        for name, entry in manifest["images"].items():
            for source, ref in ((s.cache_dir / LAYOUT, f"{name}-{entry['input_key']}"), (artifact, name)):
                try:
                    top = layout.resolve(source, ref)
                except BuildError:
                    continue
                if top.digest == entry["manifest_digest"]:
                    break
            else:
                raise BuildError(
                    f"{name}: image {entry['manifest_digest']} is neither in the build cache nor in "
                    f"{artifact}. Fix: run `mlops build` (all images)"
                )
            layout.link_blobs(source, tmp, layout.image_blobs(source, top))
            layout.tag(tmp, name, top)
        if artifact.exists():
            shutil.rmtree(artifact)
        os.replace(tmp, artifact)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    part = s.out_dir / (MANIFEST + ".part")
    part.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(part, s.out_dir / MANIFEST)


def _reuse(s, registry, stage, remote, meta, out) -> dict | None:
    """A cache hit: tag this commit in the registry by manifest copy (the blobs are in the cache layout)."""
    registry_digest = None
    if remote:
        source = meta.get("registry_ref")
        try:
            if not source or split_ref(source)[:2] != split_ref(remote)[:2]:
                raise BuildError("the cached image was pushed to another repository")
            registry_digest = registry.copy(source, remote)
        except (BuildError, urllib.error.URLError, OSError) as exc:
            print(f"{stage.name}: cached image found but {exc}; rebuilding", file=out)
            return None
    return {**meta, "registry_ref": remote, "registry_digest": registry_digest, "built": False}


def _build_one(s, builder, registry, stage, key, slug, remote, out) -> dict:
    archive_ref = f"localhost/{slug}-{stage.name}:{key[:16]}"
    with tempfile.TemporaryDirectory(prefix=f".{stage.name}-", dir=s.out_dir) as tmp:
        target = Target(stage, key, archive_ref, remote, Path(tmp) / f"{stage.name}.tar")
        print(f"{stage.name}: building with {s.builder} (key {key[:12]})", file=out, flush=True)
        builder.build(target)
        facts = layout.import_docker_archive(target.tar, s.cache_dir / LAYOUT, f"{stage.name}-{key}")
    registry_digest = registry.digest(*split_ref(remote)[1:]) if remote else None
    return {
        **facts,
        "registry_ref": remote,
        "registry_digest": registry_digest,
        "archive_ref": archive_ref,
        "built": True,
        "built_commit": s.commit,
    }


def keys(s: BuildOptions) -> dict[str, str]:
    """name -> input key, for `mlops images keys` (what decides a rebuild)."""
    return {stage.name: input_key(s.root, stage, s.base_image) for stage in stages.STAGES}


def read_manifest(path: Path) -> dict:
    """images/images.json (or deploy/report.json, which has the same "images" -> "digest" shape)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BuildError(
            f"{path}: no images manifest. Fix: run `mlops build` first (the build job "
            f"hands images/ to later jobs as artifacts)"
        ) from None
