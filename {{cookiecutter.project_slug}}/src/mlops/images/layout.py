"""OCI image layouts: the build's artifact and the unit of shipping (content-addressed blobs).

Format: the OCI image-layout spec (github.com/opencontainers/image-spec, image-layout.md):

    <layout>/oci-layout            {"imageLayoutVersion": "1.0.0"}
    <layout>/index.json            {"schemaVersion": 2, "manifests": [<descriptor of each image manifest,
                                    annotated "org.opencontainers.image.ref.name": "<ref>">]}
    <layout>/blobs/sha256/<hex>    every manifest, config and layer, named by the SHA-256 of its bytes

Every builder writes a docker-archive (`docker save` format: manifest.json, <config>.json, layer
tars); `import_docker_archive` stores its config and its layers (gzip without a timestamp) as
blobs of one layout shared by the three images, so a blob two images share is stored once, and an
unchanged layer keeps its digest across commits: a layer already compressed once (same diff id) is
not compressed again. `image_blobs` reads one image back and checks every digest it reads.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
DIFF_IDS = ".mlops-diffids.json"  # diff id (uncompressed) -> compressed blob; beside the layout, ignored by readers
CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    """One content-addressed blob: `digest` is "sha256:<hex>", `size` in bytes."""

    digest: str
    size: int
    media_type: str = ""

    @property
    def hex(self) -> str:
        return digest_hex(self.digest)


def digest_hex(digest: str) -> str:
    """'sha256:ab12..' -> 'ab12..'; anything but a lower-case sha256 digest raises ValueError."""
    algo, _, hexpart = str(digest).partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"digest {digest!r}: expected sha256:<64 hex digits>")
    return hexpart


def blob_path(layout: Path, digest: str) -> Path:
    return Path(layout) / "blobs" / "sha256" / digest_hex(digest)


def _dumps(doc: dict) -> bytes:
    # One serialisation for one document: the same image always gives the same manifest digest.
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def init(layout: Path) -> None:
    """Create an empty layout (or leave an existing one as it is)."""
    (Path(layout) / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    marker = Path(layout) / "oci-layout"
    if not marker.is_file():
        marker.write_text('{"imageLayoutVersion":"1.0.0"}')
    if not (Path(layout) / "index.json").is_file():
        _write_atomic(Path(layout) / "index.json", _dumps({"schemaVersion": 2, "manifests": []}))


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def put_bytes(layout: Path, data: bytes, media_type: str = "") -> Blob:
    """Store `data` as a blob (no-op when present); returns its descriptor."""
    blob = Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), media_type)
    path = blob_path(layout, blob.digest)
    if not path.is_file():
        _write_atomic(path, data)
    return blob


def _put_gzip(layout: Path, stream) -> Blob:
    """Gzip a layer stream (mtime 0, no file name: the same layer gives the same bytes) into a blob."""
    blobs = Path(layout) / "blobs" / "sha256"
    fd, tmp = tempfile.mkstemp(prefix=".layer.", dir=blobs)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as raw:

            class _Tee:
                def write(self, data: bytes) -> int:
                    nonlocal size
                    digest.update(data)
                    size += len(data)
                    return raw.write(data)

                def flush(self) -> None:
                    raw.flush()

            with gzip.GzipFile(filename="", mode="wb", fileobj=_Tee(), mtime=0, compresslevel=6) as gz:
                for block in iter(lambda: stream.read(CHUNK), b""):
                    gz.write(block)
        blob = Blob("sha256:" + digest.hexdigest(), size, LAYER_TYPE)
        os.replace(tmp, blob_path(layout, blob.digest))
        return blob
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def import_docker_archive(tar: Path, layout: Path, ref: str) -> dict:
    """Store a docker-archive's image in `layout` under `ref`; returns its facts:

    {"manifest_digest": "sha256:..", "digest": "sha256:<config = image id>", "size": <bytes of all
    blobs>, "layers": [<layer digests, bottom first>]}
    """
    init(layout)
    diff_ids_path = Path(layout) / DIFF_IDS
    known = json.loads(diff_ids_path.read_text()) if diff_ids_path.is_file() else {}
    with tarfile.open(tar) as archive:
        member = archive.extractfile("manifest.json")
        if member is None:
            raise BuildError(f"{tar}: no manifest.json (not a docker-archive)")
        entry = json.load(member)[0]
        config_member = archive.extractfile(entry["Config"])
        if config_member is None:
            raise BuildError(f"{tar}: its config {entry['Config']} is not a file")
        config_bytes = config_member.read()
        diff_ids = json.loads(config_bytes)["rootfs"]["diff_ids"]
        if len(diff_ids) != len(entry["Layers"]):
            raise BuildError(f"{tar}: {len(entry['Layers'])} layers but {len(diff_ids)} diff ids in the config")
        layers = []
        for diff_id, name in zip(diff_ids, entry["Layers"], strict=True):
            cached = known.get(diff_id)
            if cached and blob_path(layout, cached["digest"]).is_file():
                layers.append(Blob(cached["digest"], cached["size"], LAYER_TYPE))
                continue
            layer = archive.extractfile(name)
            if layer is None:
                raise BuildError(f"{tar}: layer {name} is not a file")
            blob = _put_gzip(layout, layer)
            known[diff_id] = {"digest": blob.digest, "size": blob.size}
            layers.append(blob)
    _write_atomic(diff_ids_path, _dumps(known))
    config = put_bytes(layout, config_bytes, CONFIG_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": LAYER_TYPE, "digest": b.digest, "size": b.size} for b in layers],
    }
    top = put_bytes(layout, _dumps(manifest), MANIFEST_TYPE)
    tag(layout, ref, top)
    return {
        "manifest_digest": top.digest,
        "digest": config.digest,
        "size": top.size + config.size + sum(b.size for b in layers),
        "layers": [b.digest for b in layers],
    }


def tag(layout: Path, ref: str, manifest: Blob) -> None:
    """Point `ref` in index.json at `manifest` (replacing what it pointed at)."""
    index_path = Path(layout) / "index.json"
    index = json.loads(index_path.read_text())
    entries = [m for m in index.get("manifests", []) if m.get("annotations", {}).get(REF_NAME) != ref]
    entries.append(
        {"mediaType": MANIFEST_TYPE, "digest": manifest.digest, "size": manifest.size, "annotations": {REF_NAME: ref}}
    )
    index["manifests"] = sorted(entries, key=lambda m: m["annotations"][REF_NAME])
    _write_atomic(index_path, _dumps(index))


def resolve(layout: Path, ref: str) -> Blob:
    """The manifest descriptor `ref` names in the layout's index.json."""
    try:
        index = json.loads((Path(layout) / "index.json").read_text())
    except FileNotFoundError:
        raise BuildError(f"{layout}: not an OCI layout (no index.json). Fix: run `mlops build`") from None
    for m in index.get("manifests", []):
        if m.get("annotations", {}).get(REF_NAME) == ref:
            return Blob(m["digest"], int(m["size"]), m.get("mediaType", MANIFEST_TYPE))
    raise BuildError(f"{layout}: no image {ref!r} in index.json. Fix: run `mlops build`")


def read_blob(layout: Path, blob: Blob) -> bytes:
    """A blob's bytes, checked against its digest and size (a mismatch raises BuildError)."""
    path = blob_path(layout, blob.digest)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BuildError(f"{layout}: blob {blob.digest} is missing. Fix: run `mlops build` again") from None
    if len(data) != blob.size or "sha256:" + hashlib.sha256(data).hexdigest() != blob.digest:
        raise BuildError(f"{path}: content does not match its digest {blob.digest}. Fix: run `mlops build --force`")
    return data


def parse_manifest(data: bytes) -> list[Blob]:
    """An image manifest's config and layer descriptors, config first (pure; raises ValueError)."""
    doc = json.loads(data)
    if doc.get("schemaVersion") != 2 or "config" not in doc or not isinstance(doc.get("layers"), list):
        raise ValueError("not an OCI/Docker schema 2 image manifest")
    blobs = []
    for d in [doc["config"], *doc["layers"]]:
        digest_hex(d["digest"])
        blobs.append(Blob(d["digest"], int(d["size"]), d.get("mediaType", "")))
    return blobs


def image_blobs(layout: Path, manifest: Blob) -> list[Blob]:
    """Every blob of one image: manifest, config, layers bottom first."""
    return [manifest, *parse_manifest(read_blob(layout, manifest))]


def lower_image(layout_dir: Path, blobs: list[Blob]) -> tuple[str, list[Blob]]:
    """The image without its top (code) layer, for Apptainer's split SIF (mlops.images.runtime.Split).

    `blobs` is image_blobs' list. The lower image keeps the runtime config (Env, Entrypoint,
    WorkingDir, User) but not what changes per commit (Labels, created, history), so every commit
    whose lower layers and runtime config are the same gets the same lower image. Stores its config
    and manifest in `layout_dir`; returns ("base-<manifest hex>", [manifest, config]).
    """
    _, config, *layers = blobs
    if len(layers) < 2:
        raise BuildError(f"{layout_dir}: an image of {len(layers)} layer(s) has no lower part to share")
    doc = json.loads(read_blob(layout_dir, config))
    doc.get("config", {}).pop("Labels", None)
    for key in ("created", "history", "author", "comment"):
        doc.pop(key, None)
    doc["rootfs"]["diff_ids"] = doc["rootfs"]["diff_ids"][:-1]
    lower_config = put_bytes(layout_dir, _dumps(doc), CONFIG_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": lower_config.digest, "size": lower_config.size},
        "layers": [{"mediaType": b.media_type or LAYER_TYPE, "digest": b.digest, "size": b.size} for b in layers[:-1]],
    }
    top = put_bytes(layout_dir, _dumps(manifest), MANIFEST_TYPE)
    return f"base-{top.hex}", [top, lower_config]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def link_blobs(src: Path, dest: Path, blobs: list[Blob]) -> None:
    """Put `blobs` of layout `src` into layout `dest` (hard links where possible: no bytes rewritten)."""
    init(dest)
    for blob in blobs:
        target = blob_path(dest, blob.digest)
        if target.is_file():
            continue
        tmp = target.with_name(f".{target.name}.part")
        tmp.unlink(missing_ok=True)
        try:
            os.link(blob_path(src, blob.digest), tmp)
        except OSError:
            import shutil

            shutil.copyfile(blob_path(src, blob.digest), tmp)
        os.replace(tmp, target)


def referenced(layout: Path) -> set[str]:
    """Digests of every blob some ref in index.json reaches (for pruning a layout)."""
    index = json.loads((Path(layout) / "index.json").read_text())
    found: set[str] = set()
    for m in index.get("manifests", []):
        found |= {b.digest for b in image_blobs(layout, Blob(m["digest"], int(m["size"])))}
    return found


def prune(layout: Path) -> int:
    """Remove blobs no ref reaches; returns the bytes freed."""
    keep = {digest_hex(d) for d in referenced(layout)}
    freed = 0
    for path in (Path(layout) / "blobs" / "sha256").iterdir():
        if path.name not in keep:
            freed += path.stat().st_size
            path.unlink()
    return freed
