"""What the rows of a sweep say at a glance: the metric that ranks them, the best ones, and which
parameters vary (the ones worth showing) and which are fixed (said once).

Rows are mlops.results.read.run_rows rows (validated).
"""

from __future__ import annotations

PREFERRED = ("mae",)  # the template's model reports mae: rank by it when it is there


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


def varying(rows: list[dict]) -> tuple[list[str], dict[str, object]]:
    """(names of the parameters that take more than one value, in first-seen order;
    {name: value} of those that take exactly one). A parameter missing from some rows varies."""
    values: dict[str, set] = {}
    for r in rows:
        for k, v in r["parameters"].items():
            values.setdefault(k, set()).add((type(v).__name__, v))
    names = list(values)
    present_everywhere = {k for k in names if all(k in r["parameters"] for r in rows)}
    fixed = {k: next(iter(values[k]))[1] for k in names if len(values[k]) == 1 and k in present_everywhere}
    return [k for k in names if k not in fixed], fixed


def sort_key(value: object) -> tuple:
    """Orders parameter values of mixed types: numbers by value, then text, then the rest."""
    if isinstance(value, bool):
        return (2, str(value))
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))
