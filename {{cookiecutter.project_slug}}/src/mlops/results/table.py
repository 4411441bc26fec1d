"""The short table that ends the log of `mlops collect` and `mlops run --local`: where people look.

Best configurations by the primary metric, the ones that failed or came back bad with their reason,
then where the plot and the summary are. Every untrusted string is made printable and bounded.
"""

from __future__ import annotations

from .. import rundir
from .plot import primary_metric, ranked
from .text import printable, tail

BEST = 5
MAX_FAILED = 20


def table(rows: list[dict], lost: list[str], plot_path: str | None, summary_path: str | None) -> str:
    """The lines to print, as one string ending in a newline."""
    metric = primary_metric(rows)
    best = ranked(rows, metric)[:BEST]
    out = []
    if best:
        out.append(f"best {len(best)} by {printable(metric, 40)} (lower is better):")
        width = max(len(printable(metric, 40)), 8)
        for r in best:
            params = printable(" ".join(f"{k}={v}" for k, v in r["parameters"].items()), 100)
            out.append(f"  {r['config_id']}  {r['metrics'][metric]:>{width}.6g}  {params}")
    else:
        out.append("no completed configuration with metrics")
    bad = [r for r in rows if r["problems"] or (r["status"] in rundir.FINAL and r["status"] != "completed")]
    if bad:
        out.append(f"not completed or bad ({len(bad)}):")
        for r in bad[:MAX_FAILED]:
            fix = rundir.FIXES.get(r["status"], "") if r["status"] != "failed" else ""  # a SLURM state: its fix
            reason = r["problems"][0] if r["problems"] else fix or f"exit {r['exit_code']}"
            last = tail(r["log"], 400, 1)
            out.append(
                f"  {r['config_id']}  {r['status']:<13} {printable(reason, 120)}"
                + (f"  | {printable(last, 100)}" if last else "")
            )
        if len(bad) > MAX_FAILED:
            out.append(f"  ... and {len(bad) - MAX_FAILED} more (summary)")
    pending = sum(r["status"] not in rundir.FINAL for r in rows)
    if pending:
        out.append(f"still pending, requeued or running: {pending}")
    if lost:
        out.append(
            f"did not come back ({len(lost)}): "
            + "; ".join(printable(x, 120) for x in lost[:3])
            + (" ..." if len(lost) > 3 else "")
        )
    if plot_path:
        out.append(f"plot: {plot_path}")
    if summary_path:
        out.append(f"summary: {summary_path}")
    return "\n".join(out) + "\n"
