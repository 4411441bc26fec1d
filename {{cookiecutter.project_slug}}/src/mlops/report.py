"""Summaries of a run: results/summary.json and results/summary.csv, one row per configuration.

Used by `mlops run --local` and by `mlops collect`, on the same run directory shape.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from . import params, rundir


def load_metrics(run: Path, config_id: str) -> dict | None:
    path = Path(run) / "results" / config_id / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def rows(run: Path) -> list[dict]:
    """One row per configuration of the index: id, status, parameters and metrics."""
    run = Path(run)
    states = rundir.read_task_states(run)
    out = []
    for entry in params.read_index(run / "envs"):
        cid = entry["config_id"]
        state = states.get(cid, {})
        metrics = load_metrics(run, cid)
        status = state.get("status") or ("completed" if metrics is not None else "pending")
        out.append({"config_id": cid, "index": entry["index"], "status": status,
                    "exit_code": state.get("exit_code"), "duration_s": state.get("duration_s"),
                    "parameters": entry["parameters"], "metrics": metrics or {}})
    return out


def write_summary(run: Path, table: list[dict] | None = None) -> tuple[Path, Path]:
    """Write summary.json/.csv; pass `table` (from rows()) when the caller needs the rows too."""
    run = Path(run)
    table = rows(run) if table is None else table
    results = run / "results"
    results.mkdir(exist_ok=True)
    summary_json = results / "summary.json"
    counts = {s: sum(r["status"] == s for r in table) for s in rundir.STATES}
    summary_json.write_text(json.dumps({"run_id": run.name, "counts": counts, "configurations": table},
                                       indent=1, sort_keys=True) + "\n")
    param_names = list(dict.fromkeys(k for r in table for k in r["parameters"]))
    metric_names = sorted({k for r in table for k, v in r["metrics"].items() if not isinstance(v, (dict, list))})
    summary_csv = results / "summary.csv"
    with summary_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["config_id", "status", "duration_s", *param_names, *metric_names])
        for r in table:
            writer.writerow([r["config_id"], r["status"], r["duration_s"] if r["duration_s"] is not None else "",
                             *(r["parameters"].get(n, "") for n in param_names),
                             *(r["metrics"].get(n, "") for n in metric_names)])
    return summary_json, summary_csv
