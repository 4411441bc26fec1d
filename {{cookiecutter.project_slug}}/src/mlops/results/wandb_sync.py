"""Upload the offline W&B runs that came back, from the machine that holds WANDB_API_KEY (never the cluster).

The child `python -I -m wandb sync` gets an allow-listed environment: what W&B needs and nothing
else (no HPC_*, GITLAB_*, CI_JOB_TOKEN, ...). A sync counts as done only when it verifiably
succeeded: `wandb sync` can print an error and still exit 0, so besides exit 0 the marker
`run-<id>.wandb.synced` that W&B writes beside the run file after a successful upload must appear
(any such marker that came from the cluster is removed first). Runs synced before (same file
content) are skipped; the record is `<out>/wandb-synced.json`. Each run has a fixed id
(<run-id>-<config-id>), so a re-sync updates it instead of duplicating it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from .read import ID
from .text import printable

# What the wandb child may see. Proxies and CA bundles: runners behind a proxy or a TLS-inspecting firewall.
ALLOWED = (
    "WANDB_API_KEY",
    "WANDB_BASE_URL",
    "WANDB_ENTITY",
    "WANDB_PROJECT",
    "WANDB_CONFIG_DIR",
    "WANDB_CACHE_DIR",
    "WANDB_DATA_DIR",
    "HOME",
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TZ",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)
RECORD = "wandb-synced.json"
TIMEOUT_S = 600


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The allow-listed environment of the `wandb sync` child."""
    source: Mapping[str, str] = os.environ if env is None else env
    return {k: source[k] for k in ALLOWED if k in source}


def offline_runs(run: Path) -> list[Path]:
    """results/<ID>/wandb/offline-run-*/ directories that hold one regular run-*.wandb file (no links)."""
    found = []
    results = run / "results"
    for cid in sorted(os.listdir(results)) if results.is_dir() and not results.is_symlink() else []:
        wandb_dir = results / cid / "wandb"
        if not ID.fullmatch(cid) or not _plain_dir(wandb_dir):
            continue
        for name in sorted(os.listdir(wandb_dir)):
            d = wandb_dir / name
            if name.startswith("offline-run-") and _plain_dir(d) and len(_run_files(d)) == 1:
                found.append(d)
    return found


def _plain_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _run_files(d: Path) -> list[Path]:
    return [
        d / n
        for n in os.listdir(d)
        if n.startswith("run-") and n.endswith(".wandb") and stat.S_ISREG(os.lstat(d / n).st_mode)
    ]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _load_record(path: Path) -> dict[str, str]:
    try:
        doc = json.loads(path.read_bytes()[: 1 << 20])
    except (OSError, ValueError, RecursionError):
        return {}
    return {k: v for k, v in doc.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(doc, dict) else {}


def sync(
    run: Path,
    out_dir: Path,
    command: list[str] | None = None,
    out: TextIO = sys.stderr,
    env: dict[str, str] | None = None,
) -> tuple[int, int]:
    """Sync each offline run of the extracted run directory `run`; returns (synced, failed).

    Does nothing without WANDB_API_KEY. `command` replaces `python -I -m wandb sync` (tests).
    """
    env = child_env(env)
    if not env.get("WANDB_API_KEY"):
        return 0, 0
    command = command or [sys.executable, "-I", "-m", "wandb", "sync"]
    record_path = out_dir / RECORD
    record = _load_record(record_path)
    synced = failed = 0
    for d in offline_runs(run):
        run_file = _run_files(d)[0]
        key = f"{run.name}/{d.parent.parent.name}/{d.name}"
        digest = _digest(run_file)
        if record.get(key) == digest:
            continue
        marker = run_file.with_name(run_file.name + ".synced")
        if os.path.lexists(marker):
            os.unlink(marker)  # it came from the cluster: only a marker W&B writes here counts
        try:
            proc = subprocess.run(
                [*command, str(d)],
                check=False,
                env=env,
                capture_output=True,
                timeout=TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
            output = (proc.stdout + proc.stderr).decode(errors="replace").replace(env["WANDB_API_KEY"], "***")
            ok = proc.returncode == 0 and _plain_file(marker)
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, output = False, str(exc)
        if ok:
            record[key] = digest
            synced += 1
        else:
            failed += 1
            last = [line for line in output.strip().splitlines() if line.strip()][-3:]
            print(
                f"  wandb sync {d.parent.parent.name}/{d.name}: not synced (no success marker); "
                + printable(" | ".join(last), 400),
                file=out,
            )
    if synced:
        from .reports import write_all

        write_all(out_dir, {RECORD: (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()})
    return synced, failed


def _plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
