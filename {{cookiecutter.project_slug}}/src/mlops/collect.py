"""`mlops collect`: bring a run's results back as CI artifacts, and report them to GitLab.

One compressed tar stream over the session carries the run directory's results (no per-file
round trips); partial results are fine. Into OUT (default results/) it writes:
    <run-id>/            the run directory as on the cluster (run.json, envs/index.json, state/, results/)
    junit.xml            one test case per configuration; a failure carries the tail of its log
    metrics.txt          GitLab metrics report (`name value` lines)
    summary.csv / .json  mlops.report.write_summary, the same table `mlops run --local` writes
    sweep.png            the sweep at a glance
Collecting twice is harmless: the files are replaced, W&B runs keep their fixed ids.
"""
from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from xml.etree import ElementTree as ET

from . import report, rundir
from .cluster import state as cluster_state
from .errors import WorkFailed

LOG_TAIL = 30
# What travels back: everything but the env files (they are the inputs, and stay on the cluster) and
# the run's GitLab trigger token (mlops.cluster.notify: a secret, never an artifact).
INCLUDE = ("run.json", "envs/index.json", "state", "results", "data/meta.json")


class CollectError(WorkFailed):
    """The run cannot be reported (yet); exit code 1 (the work ran and failed, or is not there)."""


def fetch(session, run_dir: str, dest: Path) -> int:
    """Download the run's results as one tar.gz stream and unpack it into dest; returns bytes."""
    dest.mkdir(parents=True, exist_ok=True)
    names = " ".join(shlex.quote(n) for n in INCLUDE)
    cmd = (f"cd {shlex.quote(run_dir)} && tar -czf - --ignore-failed-read --exclude='*.tmp' "
           f"--exclude='*.sbatch' --exclude='*.sh' --exclude=stage.env --exclude=trigger-token $(ls -d {names} 2>/dev/null)")
    with tempfile.NamedTemporaryFile(suffix=".tar.gz", dir=dest.parent) as tmp:
        rc, _, err = session.run(cmd, stdout=tmp, check=False, timeout=3600)
        if rc not in (0, 1):  # 1: a file changed while read (a task still writing): fine for partial results
            raise CollectError(f"downloading {run_dir} failed (exit {rc}): {err.strip()[-1000:]}")
        tmp.flush()
        size = tmp.tell()
        with tarfile.open(tmp.name, "r:gz") as tar:
            tar.extractall(dest, filter="data")
    return size


def junit(rows: list[dict], run: Path, run_id: str) -> ET.ElementTree:
    suite = ET.Element("testsuite", name=f"sweep {run_id}", tests=str(len(rows)))
    counts = {"failures": 0, "skipped": 0}
    for r in rows:
        params_text = " ".join(f"{k}={v}" for k, v in r["parameters"].items())
        case = ET.SubElement(suite, "testcase", classname=f"sweep.{run_id}", name=f"{r['config_id']} {params_text}",
                             time=str(r["duration_s"] or 0))
        log = run / "results" / r["config_id"] / "log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL:]) if log.is_file() else ""
        if r["status"] == "completed":
            metrics = ", ".join(f"{k}={v}" for k, v in r["metrics"].items() if isinstance(v, (int, float)))
            ET.SubElement(case, "system-out").text = metrics
        elif r["status"] in ("pending", "running"):
            ET.SubElement(case, "skipped", message=f"still {r['status']} when collected")
            counts["skipped"] += 1
        else:
            failure = ET.SubElement(case, "failure", message=f"{r['status']} (exit {r['exit_code']})",
                                    type=r["status"])
            failure.text = tail or "(no log)"
            counts["failures"] += 1
    suite.set("failures", str(counts["failures"]))
    suite.set("skipped", str(counts["skipped"]))
    suite.set("errors", "0")
    return ET.ElementTree(suite)


def metrics_lines(rows: list[dict]) -> list[str]:
    """GitLab metrics report: counts per state, then best and mean of each numeric metric."""
    lines = [f"configurations_{s.replace('-', '_')} {sum(r['status'] == s for r in rows)}" for s in rundir.STATES]
    names = sorted({k for r in rows for k, v in r["metrics"].items() if isinstance(v, (int, float))})
    for name in names:
        values = [r["metrics"][name] for r in rows if r["status"] == "completed"
                  and isinstance(r["metrics"].get(name), (int, float)) and math.isfinite(r["metrics"][name])]
        if values:
            lines += [f"{name}_min {min(values):.6g}", f"{name}_mean {sum(values) / len(values):.6g}"]
    return lines


# Above this many configurations one labelled bar each is unreadable (and a 5,000-bar figure takes a
# minute and half a GB to draw): show the sorted metric as a curve of fixed size instead.
MAX_BARS = 60


def plot(rows: list[dict], path: Path, metric: str | None = None) -> Path | None:
    """The sweep at a glance: one metric per configuration, sorted; failures counted (and, as bars, shown)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [k for r in rows for k, v in r["metrics"].items() if isinstance(v, (int, float))]
    metric = metric or (("mae" if "mae" in numeric else numeric[0]) if numeric else None)
    done = sorted((r for r in rows if metric in r["metrics"]), key=lambda r: r["metrics"][metric])
    rest = [r for r in rows if metric not in r["metrics"]]
    failed = sum(r["status"] not in ("pending", "running") for r in rest)
    if len(rows) <= MAX_BARS:
        fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(rows) + 2), 3.5), dpi=100)
        ax.bar(range(len(done)), [r["metrics"][metric] for r in done], color="tab:blue")
        for i, r in enumerate(rest, start=len(done)):
            ax.axvspan(i - 0.4, i + 0.4, color="tab:red" if r["status"] not in ("pending", "running") else "0.8",
                       alpha=0.3)
        ax.set_xticks(range(len(rows)), [r["config_id"][:6] for r in done + rest], rotation=60, fontsize=7)
    else:
        fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
        ax.plot(range(len(done)), [r["metrics"][metric] for r in done], color="tab:blue", linewidth=1)
        ax.set_xlabel("configurations, sorted by " + (metric or "metric"))
    ax.set_ylabel(metric or "(no metrics)")
    ax.set_title(f"{len(done)}/{len(rows)} configurations completed" + (f", {failed} failed" if failed else ""))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def sync_wandb(run: Path, out=sys.stderr) -> int:
    """Upload the offline W&B runs when WANDB_API_KEY is set (from here: the key never goes to the cluster).

    Each configuration's run has a fixed id (<run-id>-<config-id>), so a second sync updates it instead
    of creating a duplicate; a marker file skips runs already synced.
    """
    if not os.environ.get("WANDB_API_KEY"):
        return 0
    synced = 0
    for offline in sorted(run.glob("results/*/wandb/offline-run-*")):
        marker = offline / ".mlops-synced"
        if marker.exists():
            continue
        proc = subprocess.run([sys.executable, "-m", "wandb", "sync", "--no-include-synced", str(offline)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode == 0:
            marker.write_text("synced\n")
            synced += 1
        else:
            print(f"  wandb sync {offline.name} failed: {(proc.stdout + proc.stderr).strip()[-500:]}", file=out)
    return synced


def collect(session, cfg, run_id: str, out_dir: Path, wait: float = 0, out=sys.stderr) -> dict:
    """Fetch, merge the cluster's view of each configuration, and write the reports."""
    view = cluster_state.wait(session, cfg, run_id, wait, out=out) if wait else cluster_state.status(session, cfg, run_id)
    out_dir = Path(out_dir)
    run = out_dir / run_id
    size = fetch(session, view["run_dir"], run)
    # The cluster knows what a task record cannot say (timeout, OOM, cancelled while pending).
    records = rundir.read_task_states(run)
    for cid, state in view["configs"].items():
        if records.get(cid, {}).get("status") != state["status"]:
            rundir.write_task_state(run, cid, {k: v for k, v in state.items() if k not in ("config_id", "index")})
    if not (run / "envs" / "index.json").is_file():
        logs = "".join(f"\n--- {p.name} (last lines) ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-20:])
                       for p in sorted((run / "state").glob("*.log")))
        raise CollectError(f"run {run_id}: no envs/index.json, so no configuration can be reported "
                           f"(stages: {view['stages']}); if params is still pending, collect again later{logs}")
    rows = report.rows(run)
    summary_json, summary_csv = report.write_summary(run, rows)
    junit(rows, run, run_id).write(out_dir / "junit.xml", encoding="unicode", xml_declaration=True)
    (out_dir / "metrics.txt").write_text("\n".join(metrics_lines(rows)) + "\n")
    shutil.copyfile(summary_csv, out_dir / "summary.csv")
    shutil.copyfile(summary_json, out_dir / "summary.json")
    plot(rows, out_dir / "sweep.png")
    synced = sync_wandb(run, out)
    counts = {s: sum(r["status"] == s for r in rows) for s in rundir.STATES}
    print(f"run {run_id}: {cluster_state.format_counts(counts)}; {size:,} bytes downloaded into {run}"
          + (f"; {synced} W&B runs synced" if synced else ""), file=out)
    for r in rows:
        if r["status"] not in ("completed", "pending", "running"):
            print(f"  {r['status'].upper():<13} {r['config_id']} {r['parameters']}", file=out)
            log = run / "results" / r["config_id"] / "log"
            if log.is_file():
                print("".join(f"      | {line}\n" for line in log.read_text(errors="replace").splitlines()[-3:]),
                      end="", file=out)
    return {"run": run, "counts": counts, "bytes": size, "rows": rows}
