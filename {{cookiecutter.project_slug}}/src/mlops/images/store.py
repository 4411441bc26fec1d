"""`mlops deploy`: put this commit's three images into the cluster's blob store, converted.

The store (<workdir>/<slug>/images/, laid out in store.sh) keeps blobs by SHA-256, shared by every
image and commit, so a deploy uploads only the blobs the cluster lacks:
  - an image whose every blob is present costs 0 bytes; a code-only change costs its code layer,
    its config and its manifest (kilobytes);
  - a blob goes to blobs/sha256/<hex>.part, is verified by SHA-256 on the cluster, then renamed; an
    interrupted upload is resumed from the .part's size by the next deploy and verified whole;
  - a stored blob whose size or mtime differs from the stamp written when it was verified is hashed
    again; a corrupt one is removed and sent again, never used;
  - one deploy at a time per store: a flock held by an SSH channel, released when the deploy ends
    or its connection drops (two pipelines, or a retry, never write one .part together);
  - conversion for the runtime (mlops.images.runtime) runs once per image id.
Everything goes over the one SSH session of the command.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import rundir, stages
from ..settings import Settings
from . import layout, runtime
from .build import read_manifest
from .errors import DeployError

if TYPE_CHECKING:
    from ..remote import Remote

CHUNK = 1 << 20


def _script() -> bytes:
    return resources.files(__package__).joinpath("store.sh").read_bytes()


def store_run(session: Remote, store: str, *args: str, stdin: bytes = b"", timeout: float = 3600) -> str:
    """Run `store.sh ARGS` on the cluster (the script travels on stdin: nothing to install there)."""
    script = _script()
    # bash reads the script from a here-string of our stdin: `bash -c` with the script as an argument
    # would put it on the command line; instead the first line of stdin is its length.
    command = shlex.join(
        [
            "bash",
            "-c",
            'script=$(head -c "$1"); shift; bash -c "$script" store.sh "$@"',
            "store",
            str(len(script)),
            *args[:1],
            store,
            *args[1:],
        ]
    )
    _, out, _ = session.run(command, stdin=script + stdin, timeout=timeout)
    return out


def parse_facts(text: str) -> dict[str, dict]:
    """store.sh facts output -> {hex: {"state": "final"|"part"|"none", "size": int, "trusted": bool}}.

    A final blob is trusted when the stamp written at its verification still matches its size and mtime.
    """
    facts: dict[str, dict] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        hex_, state = parts[0], parts[1]
        if state == "final" and len(parts) == 6:
            facts[hex_] = {"state": "final", "size": int(parts[2]), "trusted": parts[2:4] == parts[4:6]}
        elif state == "part" and len(parts) == 3:
            facts[hex_] = {"state": "part", "size": int(parts[2]), "trusted": False}
        else:
            facts[hex_] = {"state": "none", "size": 0, "trusted": False}
    return facts


def plan(blobs: list[layout.Blob], facts: dict[str, dict]) -> tuple[list[str], dict[str, int]]:
    """Which blobs to re-hash on the cluster, and which to upload from which offset (pure).

    Returns (check: [hex], upload: {hex: offset}). A trusted final blob of the right size needs
    nothing; an untrusted one is checked first (and uploaded if the check fails).
    """
    check, upload = [], {}
    for blob in blobs:
        fact = facts.get(blob.hex, {"state": "none", "size": 0})
        if fact["state"] == "final" and fact["size"] == blob.size and fact.get("trusted"):
            continue
        if fact["state"] == "final" and fact["size"] == blob.size:
            check.append(blob.hex)
        elif fact["state"] == "part" and 0 < fact["size"] <= blob.size:
            upload[blob.hex] = fact["size"]
        else:
            upload[blob.hex] = 0
    return check, upload


def _upload(session, local: Path, remote: str, offset: int) -> int:
    """Copy `local` to `remote` from byte `offset` on; returns the bytes sent."""
    sent = 0
    with open(local, "rb") as src, session.sftp.open(remote, "r+b" if offset else "wb") as dst:
        dst.set_pipelined(True)
        if offset:
            dst.seek(offset)
            src.seek(offset)
        for block in iter(lambda: src.read(CHUNK), b""):
            dst.write(block)
            sent += len(block)
    return sent


@dataclass
class _Local:
    """One image as deploy sees it locally: its blobs, the blobs to ship (plus Apptainer's lower image)."""

    image: runtime.Image
    layout_dir: Path
    blobs: list[layout.Blob]  # manifest, config, layers
    ship: list[layout.Blob]
    split: runtime.Split | None = None
    base_manifest: layout.Blob | None = None


def _lock(session: Remote, store: str) -> AbstractContextManager[None]:
    """The store's flock, held by one SSH channel for as long as the deploy runs (store.sh lock)."""
    script = _script()
    lock = 'script=$(head -c "$1"); bash -c "$script" store.sh lock "$2"'
    return session.hold(["bash", "-c", lock, "lock", str(len(script)), store], ready=b"locked", stdin=script)


def _send(session, store: str, layout_dir: Path, blobs: dict[str, layout.Blob], upload: dict[str, int], out) -> int:
    """Upload, verify and rename; once more from byte 0 for a blob that does not verify. Returns bytes sent."""
    sent = 0
    for attempt in (1, 2):
        for hex_, offset in sorted(upload.items()):
            blob = blobs[hex_]
            print(
                f"    blob {hex_[:12]} {blob.size:>13,} B" + (f" (resuming at {offset:,})" if offset else ""),
                file=out,
                flush=True,
            )
            sent += _upload(
                session, layout.blob_path(layout_dir, blob.digest), f"{store}/blobs/sha256/{hex_}.part", offset
            )
        results = dict(line.split() for line in store_run(session, store, "commit", *sorted(upload)).splitlines())
        bad = [h for h in upload if results.get(h) != "ok"]
        if not bad:
            return sent
        print(
            f"    {len(bad)} blob(s) did not verify; " + ("sending them again" if attempt == 1 else "giving up"),
            file=out,
        )
        upload = dict.fromkeys(bad, 0)
    raise DeployError(f"blobs {', '.join(h[:12] for h in upload)} did not verify twice; check the disk on the cluster")


def deploy(session: Remote, cfg: Settings, manifest_path: Path, out: TextIO = sys.stderr) -> dict:
    """Make this commit's images present and converted on the cluster; returns the report:

    {"store": str, "bytes_uploaded": int, "seconds": float,
     "images": {stage: {"stage", "digest", "target", "size", "bytes_uploaded", "blobs", "blobs_sent",
                        "uploaded": bool, "converted": bool, "convert_seconds": float}}}
    """
    started = time.monotonic()
    manifest = read_manifest(manifest_path)
    rt = cfg.cluster.runtime
    if rt not in runtime.RUNTIMES:
        raise DeployError(f"mlops.toml cluster.runtime: {rt!r} is not one of {', '.join(runtime.RUNTIMES)}")
    images: dict[str, _Local] = {}
    for stage in stages.STAGES:  # everything local is checked before the login's first remote command
        entry = manifest.get("images", {}).get(stage.name)
        if not entry or not entry.get("oci_ref"):
            raise DeployError(f"{manifest_path}: no {stage.name} image in an OCI layout; run `mlops build` first")
        layout_dir = cfg.root / entry["layout"]
        top = layout.resolve(layout_dir, entry["oci_ref"])
        blobs = layout.image_blobs(layout_dir, top)
        if blobs[1].digest != entry["digest"]:
            raise DeployError(f"{layout_dir}: {entry['oci_ref']} is not image {entry['digest']}; run `mlops build`")
        image = runtime.Image(stage.name, entry["digest"], "", cfg.project.slug, rt)
        local = _Local(image, layout_dir, blobs, list(blobs))
        if rt in ("apptainer", "singularity", "charliecloud"):  # lower image converted once + the code layer
            base_key, extra = layout.lower_image(layout_dir, blobs)
            local.split, local.base_manifest = runtime.Split(base_key, blobs[-1].hex), extra[0]
            local.ship += extra
        images[stage.name] = local
    root = cfg.cluster_root
    store = f"{root}/images"
    session.run(f"mkdir -p {shlex.quote(store)} && chmod 700 {shlex.quote(root)} {shlex.quote(store)}")
    results: dict[str, dict] = {}
    with _lock(session, store):
        wanted = {b.hex: b for local in images.values() for b in local.ship}
        facts = parse_facts(store_run(session, store, "facts", *sorted(wanted)))
        check, upload = plan(list(wanted.values()), facts)
        if check:
            checked = dict(line.split() for line in store_run(session, store, "check", *check).splitlines())
            upload.update({h: 0 for h in check if checked.get(h) != "ok"})
        sent_by_blob: dict[str, int] = {}
        for name, local in images.items():  # a blob two images share counts for the first
            mine = {b.hex: upload.pop(b.hex) for b in local.ship if b.hex in upload}
            ship = {b.hex: b for b in local.ship}
            sent_by_blob[name] = _send(session, store, local.layout_dir, ship, mine, out) if mine else 0
        for name, local in images.items():
            image = runtime.Image(local.image.stage, local.image.digest, store, cfg.project.slug, rt)
            blobs = local.blobs
            store_run(session, store, "assemble", image.key, blobs[0].hex, str(blobs[0].size))
            if local.split and local.base_manifest:
                top = local.base_manifest
                store_run(session, store, "assemble", local.split.base_key, top.hex, str(top.size))
            t0 = time.monotonic()
            rc, _, err = session.run(
                f"if {runtime.converted_test(image)} >/dev/null 2>&1; then exit 3; fi; "
                + runtime.convert_command(image, gpu=cfg.cluster.use_gpu and name == "model", split=local.split),
                check=False,
                timeout=3600,
            )
            if rc not in (0, 3):
                raise DeployError(f"{name}: converting for {rt} failed (exit {rc}):\n{err[-2000:]}")
            seconds = round(time.monotonic() - t0, 2)
            results[name] = {
                "stage": name,
                "digest": image.digest,
                "target": image.target,
                "size": sum(b.size for b in blobs),
                "blobs": len(blobs),
                "bytes_uploaded": sent_by_blob[name],
                "uploaded": sent_by_blob[name] > 0,
                "converted": rc == 0,
                "convert_seconds": seconds if rc == 0 else 0.0,
            }
            print(
                f"  {name:<6} {image.digest[:19]} {results[name]['bytes_uploaded']:>13,} B uploaded"
                + (f", converted for {rt} in {seconds:.1f}s" if rc == 0 else ", already converted"),
                file=out,
            )
        record = "".join(f"image {local.image.key}\n" for local in images.values())
        record += "".join(f"image {local.split.base_key}\n" for local in images.values() if local.split)
        record += "".join(f"blob {h}\n" for h in sorted(wanted))
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + str(manifest.get("commit", "unknown"))[:12]
        store_run(
            session, store, "record", "".join(c for c in name if c.isalnum() or c in "._-"), stdin=record.encode()
        )
    total = sum(r["bytes_uploaded"] for r in results.values())
    print(f"deployed to {store}: {total:,} bytes uploaded", file=out)
    return {"store": store, "images": results, "bytes_uploaded": total, "seconds": round(time.monotonic() - started, 2)}


def prune(session: Remote, cfg: Settings, keep: int | None = None, out: TextIO = sys.stderr) -> str:
    """`mlops images prune`: remove from the cluster's store every blob, image layout and converted
    image that neither the last `keep` commits deployed (mlops.toml images.keep) nor a run that is
    not final (a queued or running job may still start a container from it) uses.

    Returns store.sh's summary line ("kept N images, removed M blobs, freed B bytes").
    """
    if keep is None:
        keep = cfg.images.keep
    if keep < 1:
        raise DeployError(f"images.keep = {keep}: keep at least the last commit's images (1)")
    root = cfg.cluster_root
    store = f"{root}/images"
    with _lock(session, store):
        summary = store_run(session, store, "prune", str(keep), cfg.project.slug, "|".join(rundir.FINAL)).strip()
    print(f"{store}: {summary}", file=out)
    return summary


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
