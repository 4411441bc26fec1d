"""sweep.png: the primary metric against each parameter that varies, one panel per parameter.

What a student wants at a glance is which parameter matters: every completed configuration is a
point (x: its value of the parameter, y: the metric), the mean per value is a line, the best
configuration a star. Numeric parameters get a numeric axis (logarithmic when the values span more
than two decades, e.g. learning rates), text and booleans one position per value. Fixed parameters
are not plotted; they are named once under the panels. Configurations that did not complete are
counted in the title.

The PNG carries what it shows as text (tEXt chunks "Title" and "Description", the latter JSON:
{"metric", "x": [parameter per panel], "fixed", "completed", "configurations"}), so a test or a
tool can check it without looking at pixels. Labels come from untrusted names, so matplotlib's math
text is off (a `$` in a metric name would otherwise be parsed, and can fail the drawing).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from .ranking import primary_metric, ranked, sort_key, varying
from .text import printable

MAX_PANELS = 24  # more parameters than this are listed, not drawn (summary.csv has them all)
COLUMNS = 3
MAX_TICK_LABELS = 30


def describe(rows: list[dict], metric: str | None = None) -> dict[str, Any]:
    """What the plot shows: {"metric", "x": [the parameter of each panel], "fixed": {name: value},
    "not_drawn": [varying parameters beyond MAX_PANELS], "completed", "configurations"}."""
    metric = metric or primary_metric(rows)
    names, fixed = varying(rows)
    return {
        "metric": metric,
        "x": names[:MAX_PANELS],
        "not_drawn": names[MAX_PANELS:],
        "fixed": fixed,
        "completed": len(ranked(rows, metric)),
        "configurations": len(rows),
    }


def figure(rows: list[dict], metric: str | None = None) -> Any:
    """The matplotlib Figure of the sweep (Agg backend; the caller closes it). Axes: one per varying
    parameter, x label = the parameter's name, y label = the metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    about = describe(rows, metric)
    metric, names = about["metric"], about["x"]
    done = ranked(rows, metric)
    panels = max(1, len(names))
    cols = min(COLUMNS, panels)
    lines = -(-panels // cols)
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        fig, axes = plt.subplots(lines, cols, figsize=(4.2 * cols, 3.2 * lines + 0.9), dpi=100, squeeze=False)
        for ax in axes.flat[panels:]:
            ax.remove()
        label = printable(metric, 60) if metric else "(no metrics)"
        if not done:
            ax = axes.flat[0]
            ax.text(0.5, 0.5, "no completed configuration with metrics", ha="center", va="center")
            ax.set_axis_off()
        elif not names:  # one configuration, or no parameter varies: the values side by side
            ax = axes.flat[0]
            ax.bar(range(len(done)), [r["metrics"][metric] for r in done], color="tab:blue")
            ax.set_xticks(range(len(done)), [r["config_id"] for r in done], rotation=60, fontsize=7)
            ax.set_xlabel("configuration (no parameter varies)")
            ax.set_ylabel(label)
        for i, name in enumerate(names if done else []):
            _panel(axes.flat[i], name, done, metric)
            if i % cols == 0:
                axes.flat[i].set_ylabel(label)
        failed = about["configurations"] - about["completed"]
        fig.suptitle(
            f"{label} (lower is better) against each varying parameter: {about['completed']}/"
            f"{about['configurations']} configurations" + (f", {failed} not completed (not drawn)" if failed else ""),
            fontsize=10,
        )
        footer = []
        if about["fixed"]:
            footer.append("fixed: " + ", ".join(f"{k}={v}" for k, v in about["fixed"].items()))
        if about["not_drawn"]:
            footer.append(f"not drawn ({len(about['not_drawn'])}): " + ", ".join(about["not_drawn"]))
        if footer:
            fig.text(0.01, 0.01, printable("; ".join(footer), 240), fontsize=7, ha="left", va="bottom")
        fig.tight_layout(rect=(0, 0.04 if footer else 0, 1, 0.95))
    return fig


def _panel(ax: Any, name: str, done: list[dict], metric: str) -> None:
    points = [(r["parameters"][name], r["metrics"][metric]) for r in done if name in r["parameters"]]
    best = done[0]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in points)
    if numeric:
        xs = [float(x) for x, _ in points]
        ax.scatter(xs, [y for _, y in points], s=14, alpha=0.6, color="tab:blue")
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 100:
            ax.set_xscale("log")
        position = float
    else:
        categories = sorted({x for x, _ in points}, key=sort_key)
        where = {c: i for i, c in enumerate(categories)}
        ax.scatter([where[x] for x, _ in points], [y for _, y in points], s=14, alpha=0.6, color="tab:blue")
        step = max(1, math.ceil(len(categories) / MAX_TICK_LABELS))
        ticks = list(range(0, len(categories), step))
        ax.set_xticks(ticks, [printable(categories[i], 16) for i in ticks], rotation=45 if step > 1 else 0)
        position = where.__getitem__  # type: ignore[assignment]
    means: dict[Any, list[float]] = {}
    for x, y in points:
        means.setdefault(x, []).append(y)
    if len(means) <= 200:
        order = sorted(means, key=sort_key)
        ax.plot([position(x) for x in order], [sum(means[x]) / len(means[x]) for x in order], color="0.3", lw=1)
    if name in best["parameters"]:
        ax.scatter([position(best["parameters"][name])], [best["metrics"][metric]], marker="*", s=120, color="tab:red")
    ax.set_xlabel(name)


def plot(rows: list[dict], metric: str | None = None) -> bytes:
    """The sweep as PNG bytes with the Title/Description text chunks (the caller writes them through
    outdir.write_file: never through a link). Raises ImportError without matplotlib."""
    import matplotlib.pyplot as plt

    about = describe(rows, metric)
    fig = figure(rows, about["metric"])
    meta = {
        "Title": printable(f"{about['metric']} against {', '.join(about['x']) or 'the configurations'}", 300),
        "Description": json.dumps(about, sort_keys=True, default=str),
    }
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", metadata=meta)
    finally:
        plt.close(fig)
    return buf.getvalue()
