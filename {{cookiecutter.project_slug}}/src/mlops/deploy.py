"""`mlops deploy`: put this commit's three images into the cluster's image store, converted.

The store (<workdir>/<slug>/images/) is keyed by image digest and shared by every run:
  - an image whose digest is already there is not uploaded again (0 bytes);
  - an upload goes to <key>.tar.gz.part, is verified by SHA-256 on the cluster, then renamed; the
    checksum is kept beside it (<key>.tar.gz.sha256), so later deploys trust it without re-hashing;
  - an interrupted upload leaves the .part: the next deploy continues from its size, verifies the
    whole file, and starts over once if the checksum does not match;
  - conversion for the runtime (mlops.runtime) runs once per digest and is reused afterwards.
Everything goes over the one SSH session of the command (mlops.transport).
"""
from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

from . import runtime, stages
from .images import read_manifest
from .errors import WorkFailed

CHUNK = 1 << 20


class DeployError(WorkFailed):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _remote_facts(session, image: runtime.Image) -> dict:
    """Size of the stored archive and of a leftover .part, the recorded checksum, converted or not."""
    a = shlex.quote(image.archive)
    cmd = (f"stat -c 'final %s' {a} 2>/dev/null; stat -c 'part %s' {a}.part 2>/dev/null; "
           f"printf 'sha '; cat {a}.sha256 2>/dev/null; echo; "
           f"if {runtime.converted_test(image)} >/dev/null 2>&1; then echo converted yes; fi; true")
    _, out, _ = session.run(cmd)
    facts = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        facts[key] = value.strip()
    return facts


def _upload(session, local: Path, remote: str, offset: int, out) -> int:
    """Copy `local` to `remote` from byte `offset` on; returns the bytes sent."""
    size = local.stat().st_size
    mode = "r+b" if offset else "wb"
    sent = 0
    with open(local, "rb") as src, session.sftp.open(remote, mode) as dst:
        dst.set_pipelined(True)
        if offset:
            dst.seek(offset)
            src.seek(offset)
        for block in iter(lambda: src.read(CHUNK), b""):
            dst.write(block)
            sent += len(block)
    print(f"    sent {sent:,} bytes ({offset + sent:,}/{size:,})", file=out, flush=True)
    return sent


def _remote_sha256(session, path: str) -> str:
    _, out, _ = session.run(f"sha256sum {shlex.quote(path)}", timeout=1800)
    return out.split()[0] if out.strip() else ""


def deploy_image(session, image: runtime.Image, archive: Path, gpu: bool, out=sys.stderr) -> dict:
    """Make one image present and converted on the cluster; returns what was done."""
    local_sha = sha256_file(archive)
    size = archive.stat().st_size
    facts = _remote_facts(session, image)
    sent = 0
    uploaded = False
    if facts.get("final") == str(size) and facts.get("sha") == local_sha:
        print(f"  {image.stage:<6} {image.digest[:19]} already on the cluster (0 bytes uploaded)", file=out)
    else:
        part = image.archive + ".part"
        offset = int(facts.get("part") or 0)
        if offset > size:
            offset = 0
        print(f"  {image.stage:<6} {image.digest[:19]} uploading {size:,} bytes"
              + (f" (resuming at {offset:,})" if offset else ""), file=out, flush=True)
        for attempt in (1, 2):
            sent += _upload(session, archive, part, offset, out)
            remote_sha = _remote_sha256(session, part)
            if remote_sha == local_sha:
                break
            print(f"    checksum mismatch after upload (cluster {remote_sha[:12]}, local {local_sha[:12]}); "
                  + ("uploading again from the start" if attempt == 1 else "giving up"), file=out)
            offset = 0
        else:
            session.run(f"rm -f {shlex.quote(part)}")
            raise DeployError(f"{image.stage}: the upload did not verify twice; check the disk on the cluster")
        a = shlex.quote(image.archive)
        # checksum first, then the rename: a stored archive always has its verified checksum beside it
        session.write_file(image.archive + ".sha256", local_sha.encode(), 0o600)
        session.run(f"mv -f {a}.part {a}")
        uploaded = True
        facts.pop("converted", None)
    converted = False
    if facts.get("converted") != "yes" or uploaded:
        t0 = time.monotonic()
        rc, _, err = session.run(f"if {runtime.converted_test(image)} >/dev/null 2>&1; then exit 0; fi; "
                                 + runtime.convert_command(image, gpu), check=False, timeout=3600)
        if rc != 0:
            raise DeployError(f"{image.stage}: converting for {image.runtime} failed (exit {rc}):\n{err[-2000:]}")
        converted = True
        print(f"    converted for {image.runtime} in {time.monotonic() - t0:.1f}s -> {image.target}", file=out)
    return {"stage": image.stage, "digest": image.digest, "bytes_uploaded": sent, "size": size,
            "uploaded": uploaded, "converted": converted, "target": image.target}


def deploy(session, cfg, manifest_path: Path, out=sys.stderr) -> dict:
    manifest = read_manifest(manifest_path)
    rt = str(cfg["cluster"].get("runtime", ""))
    if rt not in runtime.RUNTIMES:
        raise DeployError(f"mlops.toml cluster.runtime: {rt!r} is not one of {', '.join(runtime.RUNTIMES)}")
    store = f"{runtime.cluster_root(cfg)}/images"
    session.run(f"mkdir -p {shlex.quote(store)} && chmod 700 {shlex.quote(runtime.cluster_root(cfg))} {shlex.quote(store)}")
    results = {}
    for stage in stages.STAGES:
        entry = manifest.get("images", {}).get(stage.name)
        if not entry:
            raise DeployError(f"{manifest_path}: no {stage.name} image; run `mlops build` first")
        archive = Path(entry["archive"])
        if not archive.is_absolute():
            archive = cfg.root / archive
        if not archive.is_file():
            raise DeployError(f"{stage.name}: archive {archive} is missing; run `mlops build` (or fetch the "
                              "build job's artifacts)")
        image = runtime.Image(stage.name, entry["digest"], store, cfg.slug, rt)
        results[stage.name] = deploy_image(session, image, archive, gpu=cfg.use_gpu and stage.name == "model", out=out)
    total = sum(r["bytes_uploaded"] for r in results.values())
    print(f"deployed to {store}: {total:,} bytes uploaded", file=out)
    return {"store": store, "images": results, "bytes_uploaded": total}


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
