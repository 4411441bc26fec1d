"""The short table that ends the log of `mlops collect` and `mlops run --local`: where people look.

The fixed parameters once, then the best configurations by the primary metric with one column per
varying parameter (all of them, never cut: they are what tells the configurations apart), the ones
that failed or came back bad with their reason, then where the plot and the summary are. Every
untrusted string is made printable and bounded.
"""

from __future__ import annotations

from .. import rundir
from .ranking import primary_metric, ranked, varying
from .text import printable, tail

BEST = 5
MAX_FAILED = 20
MAX_VALUE = 24  # characters of one parameter value in a column


def cell(value: object) -> str:
    """A parameter or metric value for a column: floats in 6 significant digits, text printable and short."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return printable(value, MAX_VALUE)


def columns(header: list[str], lines: list[list[str]], right: set[int]) -> list[str]:
    """Aligned lines (indented by two spaces): the header, then the lines; columns in `right` right-aligned."""
    widths = [max(len(x) for x in column) for column in zip(header, *lines)]
    out = []
    for line in [header, *lines]:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def best_table(rows: list[dict], metric: str | None, count: int = BEST) -> list[str]:
    """The best `count` configurations as aligned lines: config id, each varying parameter, the metric."""
    names, _ = varying(rows)
    best = ranked(rows, metric)[:count]
    if not best or metric is None:
        return []
    header = ["config", *names, printable(metric, 40)]
    lines = [[r["config_id"], *(cell(r["parameters"].get(n, "-")) for n in names), cell(r["metrics"][metric])]
             for r in best]  # fmt: skip
    numeric = {
        i + 1 for i, n in enumerate(names) if all(isinstance(r["parameters"].get(n), (int, float)) for r in best)
    }
    return columns(header, lines, numeric | {len(header) - 1})


def table(rows: list[dict], lost: list[str], plot_path: str | None, summary_path: str | None) -> str:
    """The lines to print, as one string ending in a newline."""
    metric = primary_metric(rows)
    _, fixed = varying(rows)
    done = ranked(rows, metric)
    out = []
    if fixed:
        out.append("fixed: " + printable(", ".join(f"{k}={v}" for k, v in fixed.items()), 400))
    if done:
        shown = min(BEST, len(done))
        out.append(f"best {shown} by {printable(metric, 40)} (lower is better; {len(done)} completed):")
        out += best_table(rows, metric)
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
