"""`mlops runs` and `mlops compare A B`: the runs on this machine at a glance, and two of them side by side.

`runs` prints one line per run (history.find): where it is, its cluster, commit, when, the counts of
its configurations and its best value of the primary metric.

`compare A B` prints the two runs' provenance side by side (commit, cluster, pipeline, created,
counts, best), then every configuration both ran, matched by config id (the hash of its parameters:
the same id is the same configuration, whatever the commit or cluster), with the metric of each and
the difference B - A, largest first; then what only one of them ran. The varying parameters of the
two runs together are the columns, so a change of commit or cluster can be read per configuration.
"""

from __future__ import annotations

import json

from .. import rundir
from ..settings import Settings
from .history import Run, counts, find, resolve
from .ranking import primary_metric, ranked, varying
from .table import cell, columns
from .text import printable

SHOWN = 30  # configurations listed by compare (the --json output has them all)


def _best(run: Run, metric: str | None) -> str:
    best = ranked(run.rows, metric)
    return f"{printable(metric, 30)}={best[0]['metrics'][metric]:.6g} ({best[0]['config_id']})" if best else "-"


def runs_text(runs: list[Run]) -> str:
    """The `mlops runs` table, one line per run (a line saying there is none when empty)."""
    if not runs:
        return "no runs here yet: `mlops run --local`, or `mlops collect --out results/` after a cluster run\n"
    header = ["where", "cluster", "commit", "created", "configurations", "best"]
    lines = [
        [
            r.where,
            r.cluster,
            (r.about.get("commit") or "unknown")[:10],
            (r.about.get("created") or "-")[:19].replace("T", " "),
            rundir.format_counts(counts(r)),
            _best(r, primary_metric(r.rows)),
        ]
        for r in runs
    ]
    problems = [f"  {r.where}: {printable(p, 160)}" for r in runs for p in r.problems[:2]]
    return "\n".join([*columns(header, lines, set()), *problems]) + "\n"


def runs_command(cfg: Settings, as_json: bool = False) -> str:
    """`mlops runs`: the text (or JSON) listing every run of this project on this machine."""
    runs = find(cfg)
    if not as_json:
        return runs_text(runs)
    doc = [{"where": r.where, "run_id": r.run_id, "cluster": r.cluster, **r.about, "counts": counts(r),
            "best": _best(r, primary_metric(r.rows)), "problems": r.problems} for r in runs]  # fmt: skip
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def compare_command(cfg: Settings, ref_a: str, ref_b: str, metric: str | None, as_json: bool = False) -> str:
    """`mlops compare A B`: BadInput when a name matches no run or several (history.resolve)."""
    runs = find(cfg)
    return compare_text(resolve(cfg, ref_a, runs), resolve(cfg, ref_b, runs), metric, as_json)


def comparison(a: Run, b: Run, metric: str | None = None) -> dict:
    """The comparison as data: {"a", "b" (where, cluster, commit, pipeline, created, counts, best),
    "metric", "same": [{config_id, parameters, a, b, delta}], "only_a", "only_b" (config ids)}."""
    metric = metric or primary_metric(a.rows) or primary_metric(b.rows)
    by_a = {r["config_id"]: r for r in a.rows}
    by_b = {r["config_id"]: r for r in b.rows}
    same = []
    for cid in [c for c in by_a if c in by_b]:
        va, vb = (by[cid]["metrics"].get(metric) if by[cid]["status"] == "completed" else None for by in (by_a, by_b))
        delta = vb - va if va is not None and vb is not None else None
        same.append({"config_id": cid, "parameters": by_a[cid]["parameters"], "a": va, "b": vb, "delta": delta})
    same.sort(key=lambda s: (s["delta"] is None, -abs(s["delta"] or 0)))

    def side(run: Run) -> dict:
        keys = ("commit", "pipeline", "created")
        return {"where": run.where, "cluster": run.cluster, **{k: run.about.get(k) for k in keys},
                "counts": counts(run), "best": _best(run, metric)}  # fmt: skip

    return {
        "a": side(a),
        "b": side(b),
        "metric": metric,
        "same": same,
        "only_a": [c for c in by_a if c not in by_b],
        "only_b": [c for c in by_b if c not in by_a],
    }


def compare_text(a: Run, b: Run, metric: str | None = None, as_json: bool = False) -> str:
    """What `mlops compare A B` prints (JSON with `as_json`)."""
    doc = comparison(a, b, metric)
    if as_json:
        return json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n"
    metric = doc["metric"]
    out = [f"A: {a.where}", f"B: {b.where}"]
    rows = [
        [key, *(str(doc[s][key] if doc[s][key] is not None else "-")[:40] for s in ("a", "b"))]
        for key in ("cluster", "commit", "pipeline", "created")
    ]
    rows.append(["configurations", *(rundir.format_counts(doc[s]["counts"]) for s in ("a", "b"))])
    rows.append(["best", doc["a"]["best"], doc["b"]["best"]])
    for key, va, vb in rows:
        mark = "" if va == vb else "  *"
        out.append(f"  {key:<15} {va:<42} {vb}{mark}")
    names, _ = varying(a.rows + b.rows)
    same = doc["same"]
    if same and metric:
        out.append(f"same configurations ({len(same)}), {printable(metric, 40)} of A and B, largest change first:")
        header = ["config", *names, "A", "B", "B - A"]
        lines = [
            [s["config_id"], *(cell(s["parameters"].get(n, "-")) for n in names),
             *(cell(s[k]) if s[k] is not None else "-" for k in ("a", "b")),
             f"{s['delta']:+.6g}" if s["delta"] is not None else "-"]
            for s in same[:SHOWN]
        ]  # fmt: skip
        out += columns(header, lines, set(range(1, len(header))))
        if len(same) > SHOWN:
            out.append(f"  ... and {len(same) - SHOWN} more (--json)")
    elif not same:
        out.append("no configuration in common (different parameters: compare their best values above)")
    for key, label in (("only_a", "only in A"), ("only_b", "only in B")):
        if doc[key]:
            ids = doc[key]
            out.append(f"{label} ({len(ids)}): " + " ".join(ids[:10]) + (" ..." if len(ids) > 10 else ""))
    return "\n".join(out) + "\n"
