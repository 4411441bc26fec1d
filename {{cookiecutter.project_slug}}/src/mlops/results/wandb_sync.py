"""Upload the offline W&B runs that came back, from the machine that holds WANDB_API_KEY (never the cluster).

The child `python -I -m wandb sync` gets an allow-listed environment: what W&B needs and nothing
else (no HPC_*, GITLAB_*, CI_JOB_TOKEN, ...). A sync counts as done only when it verifiably
succeeded: `wandb sync` can print an error and still exit 0, so besides exit 0 the marker
`run-<id>.wandb.synced` that W&B writes beside the run file after a successful upload must appear
(any such marker that came from the cluster is removed first). Runs synced before (same file
content) are skipped; the record is `<out>/wandb-synced.json`. Each run has a fixed id
(<run-id>-<config-id>), so a re-sync updates it instead of duplicating it.

W&B writes symbolic links into every run directory (`wandb/latest-run`, `wandb/debug.log` and
`wandb/debug-internal.log` into the run's logs/, `logs/debug-core.log` to the user's cache):
`own_link` recognizes exactly those shapes so that collect counts them as W&B's own, expected files
instead of reporting them as refused (issue 19). They are still never created nor followed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from .outdir import write_file
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

# W&B's run directory names: offline-run-YYYYMMDD_HHMMSS-<run id> (run-... when online).
_RUN_DIR = r"(?:offline-)?run-[0-9]{8}_[0-9]{6}-[A-Za-z0-9_.-]{1,128}"
_WANDB = r"results/[0-9a-f]{10}/wandb/"
_OWN_LINKS = (  # (name, target) of each link W&B writes
    (re.compile(_WANDB + "latest-run"), re.compile(_RUN_DIR)),
    (re.compile(_WANDB + "(debug|debug-internal)\\.log"), re.compile(_RUN_DIR + "/logs/(debug|debug-internal)\\.log")),
    (
        re.compile(_WANDB + _RUN_DIR + "/logs/debug-core\\.log"),
        re.compile("/[^\\x00]{0,4000}/core-debug-[0-9_]{1,32}\\.log"),
    ),
)


def own_link(name: str, target: str) -> bool:
    """True when the symbolic link `name` -> `target` (as sent in the results stream) is one W&B
    writes itself (see the module docstring); debug.log links must point at their own name."""
    for name_re, target_re in _OWN_LINKS:
        found = name_re.fullmatch(name)
        if found and target_re.fullmatch(target):
            return not found.groups() or target.endswith(f"/{found.group(1)}.log")
    return False


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


def _load_record(record_dir: Path | int) -> dict[str, str]:
    from .reader import RunReader, Unreadable

    try:
        with RunReader(record_dir) as reader:
            doc = reader.json(RECORD, 1 << 20)
    except (OSError, Unreadable):
        return {}
    return {k: v for k, v in doc.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(doc, dict) else {}


def sync(
    run: Path,
    record_dir: Path | int,
    command: list[str] | None = None,
    out: TextIO = sys.stderr,
    env: dict[str, str] | None = None,
) -> tuple[int, int]:
    """Sync each offline run of the extracted run directory `run`; returns (synced, failed).

    The record of what was synced is RECORD in `record_dir` (a path, or a directory fd: written through
    it, never through a link). Does nothing without WANDB_API_KEY. `command` replaces
    `python -I -m wandb sync` (tests).
    """
    env = child_env(env)
    if not env.get("WANDB_API_KEY"):
        return 0, 0
    command = command or [sys.executable, "-I", "-m", "wandb", "sync"]
    record = _load_record(record_dir)
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
        data = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
        if isinstance(record_dir, int):
            write_file(record_dir, RECORD, data)
        else:
            from .outdir import write_all

            write_all(record_dir, {RECORD: data})
    return synced, failed


def _plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
