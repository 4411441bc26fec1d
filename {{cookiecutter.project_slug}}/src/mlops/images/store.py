"""The cluster's blob store of a project (<cluster_root>/images/, laid out in store.sh): the protocol
`mlops deploy` (mlops.images.deployment) and `mlops images prune` speak with it.

The store keeps blobs by SHA-256, shared by every image and commit, so a deploy uploads only the
blobs the cluster lacks:
  - an image whose every blob is present costs 0 bytes; a code-only change costs its code layer,
    its config and its manifest (kilobytes);
  - a blob goes to blobs/sha256/<hex>.part, is verified by SHA-256 on the cluster, then renamed; an
    interrupted upload is resumed from the .part's size by the next deploy and verified whole;
  - a stored blob whose size or mtime differs from the stamp written when it was verified is hashed
    again; a corrupt one is removed and sent again, never used;
  - one deploy at a time per store: a flock held by an SSH channel, released when the deploy ends
    or its connection drops (two pipelines, or a retry, never write one .part together).
Everything goes over the one SSH session of the command.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import rundir
from . import layout, scripts
from .errors import DeployError, DeploySetupError

if TYPE_CHECKING:
    from ..remote import Remote
    from ..settings import Settings

CHUNK = 1 << 20


def store_run(session: Remote, store: str, *args: str, stdin: bytes = b"", timeout: float = 3600) -> str:
    """Run `store.sh COMMAND STORE ARGS` (args[0] is the command) on the cluster; its stdout."""
    _, out, _ = scripts.run(session, "store.sh", *args[:1], store, *args[1:], stdin=stdin, timeout=timeout)
    return out


def lock(session: Remote, store: str) -> AbstractContextManager[None]:
    """The store's flock, held by one SSH channel for as long as the `with` block runs (store.sh lock)."""
    return scripts.hold(session, "store.sh", "lock", store, ready=b"locked")


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


def missing(session: Remote, store: str, blobs: list[layout.Blob]) -> dict[str, int]:
    """The blobs the store lacks (or holds corrupt): {hex: offset to upload from}. Under the lock."""
    facts = parse_facts(store_run(session, store, "facts", *sorted(b.hex for b in blobs)))
    check, upload = plan(blobs, facts)
    if check:
        checked = dict(line.split() for line in store_run(session, store, "check", *check).splitlines())
        upload.update({h: 0 for h in check if checked.get(h) != "ok"})
    return upload


def _upload(session: Remote, local: Path, remote: str, offset: int) -> int:
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


def send(
    session: Remote, store: str, layout_dir: Path, blobs: dict[str, layout.Blob], upload: dict[str, int], out: TextIO
) -> int:
    """Upload, verify and rename; once more from byte 0 for a blob that does not verify. Returns bytes sent.

    Raises DeployError when a blob does not verify twice.
    """
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


def assemble(session: Remote, store: str, key: str, manifest: layout.Blob) -> None:
    """Make refs/<key>/ the OCI layout of one image (its manifest `manifest`, the store's blobs)."""
    store_run(session, store, "assemble", key, manifest.hex, str(manifest.size))


def record(session: Remote, store: str, name: str, keys: list[str], hexes: list[str]) -> None:
    """Write deploys/<name>: what one deploy used ("image <key>", "blob <hex>" lines; prune keeps them)."""
    lines = "".join(f"image {k}\n" for k in keys) + "".join(f"blob {h}\n" for h in sorted(hexes))
    safe = "".join(c for c in name if c.isalnum() or c in "._-")
    store_run(session, store, "record", safe, stdin=lines.encode())


def prune(session: Remote, cfg: Settings, keep: int | None = None, out: TextIO = sys.stderr) -> str:
    """`mlops images prune`: remove from the cluster's store every blob, image layout and converted
    image that neither the last `keep` commits deployed (mlops.toml images.keep) nor a run that is
    not final (a queued or running job may still start a container from it) uses.

    Returns store.sh's summary line ("kept N images, removed M blobs, freed B bytes").
    Raises DeploySetupError for keep < 1.
    """
    if keep is None:
        keep = cfg.images.keep
    if keep < 1:
        raise DeploySetupError(f"images.keep = {keep}: keep at least the last commit's images (1)")
    store = f"{cfg.cluster_root}/images"
    with lock(session, store):
        summary = store_run(session, store, "prune", str(keep), cfg.project.slug, "|".join(rundir.FINAL)).strip()
    print(f"{store}: {summary}", file=out)
    return summary
