"""`mlops collect`: bring a run's results back as CI artifacts and report them to GitLab.

Order: the run id is checked (before any login, by the CLI); the output directory is opened (outdir:
never through a link; the CLI does it before the login too); the scheduler's view of the run comes
from the caller (mlops.cluster.runs reads it once; None when the cluster's state files are unreadable:
then the task records that come back are used and the problem is reported); one capped tar.gz stream
(fetch.py) unpacked as data into a fresh private directory (extract.py); validated reading (read.py);
the reports (reports.py, plot.py) written into that directory, which then replaces
OUT/<cluster>/<run-id>/; W&B sync (wandb_sync.py); the table (table.py). Into OUT:

    <cluster>/<run-id>/      one collected run (contract E: two clusters of one commit side by side)
        run.json envs/index.json state/ results/<config-id>/ data/meta.json   what came back
        junit.xml            one test case per configuration (+ one `collect` case if something did not come back)
        metrics.txt          GitLab metrics report, names prefixed with the cluster's name
        summary.csv / .json  one row per configuration; summary.json also lists every skipped member
        sweep.png            the metric against each varying parameter
    <cluster>/metrics.txt    the metrics.txt of the run this collect wrote last (one fixed path per
                             cluster for the pipeline's `artifacts:reports:metrics`)
    <cluster>/wandb-synced.json  what W&B sync uploaded (so a second collect adds no duplicate)

Collecting twice is harmless: OUT/<cluster>/<run-id>/ and the reports are replaced. Nothing is
written outside OUT. A full disk here is outdir.DiskFull (exit 1, "no space left on the runner").
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import TextIO

from .. import runid
from ..remote import Remote
from ..rundir import format_counts
from ..settings import Settings
from . import extract, fetch, outdir, read, reports, table, wandb_sync
from .plot import plot
from .text import printable

TOP = ("run.json", "envs", "state", "results", "data")  # what a run directory holds (send_results.sh)
REPORTS = ("junit.xml", "metrics.txt", "summary.csv", "summary.json", "sweep.png")


def open_output(out_root: str | os.PathLike, cfg: Settings) -> int:
    """fd of OUT/<cluster>/ (created; no component a link: outdir.open_out). The CLI calls it before
    the login too, so that a bad --out is refused before anything else (BadInput)."""
    root_fd = outdir.open_out(out_root, cfg.root)
    try:
        return outdir.subdir(root_fd, cfg.cluster.name, shown=f"{os.fspath(out_root).rstrip('/')}/{cfg.cluster.name}")
    finally:
        os.close(root_fd)


def _extract(work_fd: int, tree_fd: int, cfg: Settings, where: str) -> extract.Extracted:
    """Unpack work/stream.tar.gz into the tree (then remove the stream)."""
    fd = os.open("stream.tar.gz", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=work_fd)
    with os.fdopen(fd, "rb") as fh:
        done = extract.extract(fh, tree_fd, cfg.collect, top=TOP, expected_link=wandb_sync.own_link, where=where)
    os.unlink("stream.tar.gz", dir_fd=work_fd)
    return done


def _replace_run_dir(cluster_fd: int, work_fd: int, run_id: str) -> None:
    """Move work/tree to <cluster>/<run-id>, the previous one (if any, whatever it is: a link is moved,
    not followed) into work/ (removed with it)."""
    try:
        os.rename(run_id, "previous", src_dir_fd=cluster_fd, dst_dir_fd=work_fd)
    except FileNotFoundError:
        pass
    os.rename("tree", run_id, src_dir_fd=work_fd, dst_dir_fd=cluster_fd)


def collect(
    session: Remote,
    cfg: Settings,
    run_id: str,
    out_root: Path,
    view: dict | None = None,
    view_problem: str | None = None,
    out: TextIO = sys.stderr,
) -> dict:
    """Fetch, extract, read, report into OUT/<cluster>/<run-id>/. Returns {"run" (its path), "rows",
    "counts", "bytes", "ok", "lost", "refused", "transfer"}; ok is True only when every configuration
    completed with good results and everything sent came back. Raises BadInput (a bad run id, a link
    in the output path), WorkFailed (the download failed), outdir.DiskFull (this machine is full).

    `view` is the cluster's state of the run as mlops.cluster.state.status gives it ("run_dir",
    "configs": SLURM's word per configuration, which wins over the task records that come back);
    None with `view_problem` saying why when it could not be read (then the records are used)."""
    runid.check(run_id)
    cluster = cfg.cluster.name
    shown = Path(out_root) / cluster
    cluster_fd = open_output(out_root, cfg)
    work = f".{run_id}.collect-{secrets.token_hex(4)}"
    try:
        run_dir = view["run_dir"] if view else runid.run_dir(cfg.cluster_root, run_id)
        work_fd = outdir.subdir(cluster_fd, work, f"{shown}/{work}", mode=0o700)
        try:
            tree_fd = outdir.subdir(work_fd, "tree", f"{shown}/{work}/tree", mode=0o700)
            try:
                size, not_sent = fetch.download(session, run_dir, work_fd, "stream.tar.gz", cfg.collect, shown)
                done = _extract(work_fd, tree_fd, cfg, str(shown))
                result = _report(tree_fd, cfg, run_id, view, view_problem, not_sent, done, size, out)
                files = result.pop("files")
                for name, data in files.items():
                    outdir.write_file(tree_fd, name, data, shown=f"{shown}/{run_id}/{name}")
            finally:
                os.close(tree_fd)
            _replace_run_dir(cluster_fd, work_fd, run_id)
        finally:
            os.close(work_fd)
            shutil.rmtree(work, dir_fd=cluster_fd, ignore_errors=True)
        outdir.write_file(cluster_fd, "metrics.txt", files["metrics.txt"], shown=f"{shown}/metrics.txt")
        run = shown / run_id
        synced, sync_failed = wandb_sync.sync(run, cluster_fd, out=out)
    finally:
        os.close(cluster_fd)
    t = result["transfer"]
    print(
        f"run {run_id} on {cluster}: {format_counts(result['counts'])}; {size:,} bytes downloaded into "
        f"{run}; {t['files_kept']:,} files kept, {t['members_skipped']:,} skipped, "
        f"{t['links_refused']:,} links/devices/FIFOs refused, {t['wandb_links']:,} W&B links (expected, not created)"
        + (f"; {synced} W&B runs synced" if synced else "")
        + (f", {sync_failed} not" if sync_failed else ""),
        file=out,
    )
    for name, why in done.refused[:5]:
        print(f"  refused {printable(name, 120)}: {printable(why, 160)}", file=out)
    plot_path = str(run / "sweep.png") if "sweep.png" in files else None
    print(table.table(result["rows"], result["lost"], plot_path, str(run / "summary.csv")), end="", file=out)
    return {"run": run, **result}


def _report(
    tree_fd: int,
    cfg: Settings,
    run_id: str,
    view: dict | None,
    view_problem: str | None,
    not_sent: list[tuple[str, str]],
    done: extract.Extracted,
    size: int,
    out: TextIO,
) -> dict:
    """The rows of the extracted tree and the report files (name -> bytes) of one collect."""
    rows, run_problems = read.run_rows(tree_fd, cfg.collect, view["configs"] if view else None)
    skipped = not_sent + done.skipped
    lost = (
        ([view_problem] if view_problem else [])
        + run_problems
        + ([done.stopped] if done.stopped else [])
        + [f"{name}: {why}" for name, why in skipped]
    )
    transfer = {
        "files_kept": done.files,
        "members_skipped": len(skipped),
        "links_refused": len(done.refused),
        "wandb_links": len(done.expected),
    }
    cluster = cfg.cluster.name
    with read.RunReader(tree_fd) as reader:
        about = {**read.provenance(reader), "cluster": cluster}
    files = {
        "junit.xml": reports.junit(rows, run_id, lost, cfg.collect, cluster),
        "metrics.txt": ("\n".join(reports.metrics_lines(rows, transfer, prefix=cluster)) + "\n").encode(),
        "summary.csv": reports.summary_csv(rows),
        "summary.json": reports.summary_json(
            rows, run_id, lost, transfer, skipped, done.refused, done.stopped, about=about
        ),
    }
    try:
        files["sweep.png"] = plot(rows)
    except Exception as exc:  # noqa: BLE001 (a plot must never cost the reports; no matplotlib: pip install .[report])
        print(f"  sweep.png not drawn ({type(exc).__name__}: {printable(exc, 100)})", file=out)
    ok = not lost and all(r["status"] == "completed" and not r["problems"] for r in rows) and bool(rows)
    return {
        "rows": rows,
        "counts": reports.counts(rows),
        "bytes": size,
        "ok": ok,
        "lost": lost,
        "refused": done.refused,
        "transfer": transfer,
        "files": files,
    }
