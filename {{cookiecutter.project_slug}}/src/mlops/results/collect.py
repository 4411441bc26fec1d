"""`mlops collect`: bring a run's results back as CI artifacts and report them to GitLab.

Order: the run id is checked (before any login, by the CLI); the scheduler's view of the run
(optional: if the cluster's state files are unreadable, the task records that come back are used
and the problem is reported); one capped tar.gz stream (fetch.py) unpacked as data into a fresh
private directory (extract.py), which then replaces OUT/<run-id>/; validated reading (read.py);
the reports (reports.py, plot.py); W&B sync (wandb_sync.py); the table (table.py). Into OUT:

    <run-id>/            what came back: run.json, envs/index.json, state/, results/ (regular files only)
    junit.xml            one test case per configuration (+ one `collect` case if something did not come back)
    metrics.txt          GitLab metrics report
    summary.csv / .json  one row per configuration; summary.json also lists every skipped member
    sweep.png            the sweep at a glance

Collecting twice is harmless: OUT/<run-id>/ and the reports are replaced. Nothing is written outside OUT.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from .. import runid
from ..errors import BadInput
from ..remote import Remote
from ..rundir import format_counts
from ..settings import Settings
from . import extract, fetch, read, reports, table, wandb_sync
from .caps import Caps
from .plot import plot
from .text import printable


def _replace_run_dir(out_fd: int, tree: Path, run_id: str, work: Path) -> None:
    """Move the freshly extracted tree to OUT/<run-id>, the previous one (if any) into `work` (removed later)."""
    try:
        os.rename(run_id, str(work / "previous"), src_dir_fd=out_fd)
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        os.unlink(run_id, dir_fd=out_fd)
    os.rename(str(tree), run_id, dst_dir_fd=out_fd)


def collect(
    session: Remote,
    cfg: Settings,
    run_id: str,
    out_dir: Path,
    view: dict | None = None,
    view_problem: str | None = None,
    out: TextIO = sys.stderr,
    caps: Caps | None = None,
) -> dict:
    """Fetch, extract, read, report. Returns {"run", "rows", "counts", "bytes", "ok", "lost", "refused"};
    ok is True only when every configuration completed with good results and everything sent came back.

    `view` is the cluster's state of the run as mlops.cluster.state.status gives it ("run_dir",
    "configs": SLURM's word per configuration, which wins over the task records that come back);
    None with `view_problem` saying why when it could not be read (then the records are used)."""
    caps = caps or Caps.from_settings(cfg)
    runid.check(run_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        out_fd = os.open(out_dir, reports.DIR_FLAGS)
    except OSError as exc:
        raise BadInput(f"--out {out_dir}: not a plain directory ({exc.strerror})") from None
    try:
        root = cfg.cluster_root
        run_dir = view["run_dir"] if view else runid.run_dir(root, run_id)
        work = Path(tempfile.mkdtemp(prefix=f".{run_id}.collect-", dir=out_dir))  # 0700, ours
        try:
            tree = work / "tree"
            os.mkdir(tree, 0o700)
            size, not_sent = fetch.download(session, run_dir, work / "stream.tar.gz", caps)
            with open(work / "stream.tar.gz", "rb") as fh:
                done = extract.extract(fh, tree, caps)
            os.unlink(work / "stream.tar.gz")
            _replace_run_dir(out_fd, tree, run_id, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        run = out_dir / run_id
        rows, run_problems = read.run_rows(run, caps, view["configs"] if view else None)
        skipped = not_sent + done.skipped
        lost = (
            ([view_problem] if view_problem else [])
            + run_problems
            + ([done.stopped] if done.stopped else [])
            + [f"{name}: {why}" for name, why in skipped]
        )
        try:
            png = plot(rows)
        except Exception as exc:  # noqa: BLE001 (a plot must never cost the reports)
            png = b""
            print(f"  sweep.png not drawn ({type(exc).__name__}: {printable(exc, 100)})", file=out)
        files = {
            "junit.xml": reports.junit(rows, run_id, lost, caps),
            "metrics.txt": ("\n".join(reports.metrics_lines(rows, len(skipped))) + "\n").encode(),
            "summary.csv": reports.summary_csv(rows),
            "summary.json": reports.summary_json(rows, run_id, lost, skipped + done.refused, done.stopped),
        }
        if png:
            files["sweep.png"] = png
        for name, data in files.items():
            reports.write_file(out_fd, name, data)
    finally:
        os.close(out_fd)
    synced, sync_failed = wandb_sync.sync(run, out_dir, out=out)
    counts = reports.counts(rows)
    print(
        f"run {run_id}: {format_counts(counts)}; {size:,} bytes downloaded into {run}; "
        f"{done.files:,} files kept, {len(skipped):,} skipped, {len(done.refused):,} links/devices/FIFOs refused"
        + (f"; {synced} W&B runs synced" if synced else "")
        + (f", {sync_failed} not" if sync_failed else ""),
        file=out,
    )
    for name, why in done.refused[:5]:
        print(f"  refused {printable(name, 120)}: {printable(why, 160)}", file=out)
    print(
        table.table(rows, lost, str(out_dir / "sweep.png") if png else None, str(out_dir / "summary.csv")),
        end="",
        file=out,
    )
    ok = not lost and all(r["status"] == "completed" and not r["problems"] for r in rows) and bool(rows)
    return {"run": run, "rows": rows, "counts": counts, "bytes": size, "ok": ok, "lost": lost, "refused": done.refused}
