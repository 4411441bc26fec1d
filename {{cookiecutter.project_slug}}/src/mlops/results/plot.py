"""sweep.png: the sweep at a glance (one metric per configuration, sorted; failures counted).

Labels come from untrusted names, so matplotlib's math text is off (a `$` in a metric name would
otherwise be parsed, and can fail the drawing).
"""

from __future__ import annotations

from .text import printable

# Above this many configurations one labelled bar each is unreadable (and a 5,000-bar figure takes a
# minute and half a GB to draw): the sorted metric is drawn as a curve of fixed size instead.
MAX_BARS = 60
PREFERRED = ("mae",)


def primary_metric(rows: list[dict]) -> str | None:
    """The metric that ranks configurations: the first of PREFERRED present, else the first name in order."""
    names = sorted({k for r in rows if not r["problems"] for k, v in r["metrics"].items() if v is not None})
    return next((m for m in PREFERRED if m in names), names[0] if names else None)


def ranked(rows: list[dict], metric: str | None) -> list[dict]:
    """Completed configurations with a finite value of `metric`, best (lowest) first."""
    done = [
        r
        for r in rows
        if r["status"] == "completed" and not r["problems"] and metric and r["metrics"].get(metric) is not None
    ]
    return sorted(done, key=lambda r: r["metrics"][metric])


def plot(rows: list[dict], metric: str | None = None) -> bytes:
    """The sweep as PNG bytes (the caller writes them with reports.write_all: never through a link)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = metric or primary_metric(rows)
    done = ranked(rows, metric)
    ranked_ids = {id(r) for r in done}
    rest = [r for r in rows if id(r) not in ranked_ids]
    failed = sum(r["status"] not in ("pending", "running") for r in rest)
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        if len(rows) <= MAX_BARS:
            fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(rows) + 2), 3.5), dpi=100)
            ax.bar(range(len(done)), [r["metrics"][metric] for r in done], color="tab:blue")
            for i, r in enumerate(rest, start=len(done)):
                bad = r["status"] not in ("pending", "running")
                ax.axvspan(i - 0.4, i + 0.4, color="tab:red" if bad else "0.8", alpha=0.3)
            ax.set_xticks(range(len(rows)), [r["config_id"][:6] for r in done + rest], rotation=60, fontsize=7)
        else:
            fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
            ax.plot(range(len(done)), [r["metrics"][metric] for r in done], color="tab:blue", linewidth=1)
            ax.set_xlabel("configurations, sorted by " + printable(metric or "metric", 60))
        ax.set_ylabel(printable(metric, 60) if metric else "(no metrics)")
        ax.set_title(f"{len(done)}/{len(rows)} configurations completed" + (f", {failed} not" if failed else ""))
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
