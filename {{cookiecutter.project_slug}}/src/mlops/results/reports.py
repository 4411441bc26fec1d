"""The reports of a run, written from validated rows (mlops.results.read.run_rows) only.

    junit.xml     GitLab unit test report (JUnit XML): one test case per configuration; a failed one
                  carries the tail of its log, one with bad results an <error> with the reasons;
                  well-formed XML 1.0 whatever the log holds
    metrics.txt   GitLab metrics report: `name value` lines, names [a-zA-Z_][a-zA-Z0-9_]*, each with
                  the given prefix (the cluster's name: GitLab merges the metrics reports of all jobs
                  of a pipeline into one list, so two clusters' collect jobs must not share names)
    summary.csv   one row per configuration; no cell is read as a formula by a spreadsheet
    summary.json  strict JSON (no NaN/Infinity: a non-finite metric is null)

The transfer counts (files kept, members skipped, links refused, W&B's own links) come from one
dict into metrics.txt, summary.json and the log line alike. The bytes are written by outdir.py
(never through a link).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from xml.etree import ElementTree as ET

from .. import rundir
from ..settings import Collect
from .text import csv_cell, metric_name, printable, tail, xml_text

MAX_LISTED = 200  # skipped members named in junit.xml (all of them are in summary.json up to MAX_JSON_LISTED)
MAX_JSON_LISTED = 10_000
# The transfer counts of one collect, in this order (metrics.txt: results_<name>; summary.json: "transfer").
TRANSFER = ("files_kept", "members_skipped", "links_refused", "wandb_links")


def counts(rows: list[dict]) -> dict[str, int]:
    """State -> number of configurations (rundir.count_states)."""
    return rundir.count_states([r["status"] for r in rows])


def _params_text(row: dict) -> str:
    return printable(" ".join(f"{k}={v}" for k, v in row["parameters"].items()), 2000)


def junit(rows: list[dict], run_id: str, lost: list[str], caps: Collect, cluster: str = "") -> bytes:
    """JUnit XML: configurations, plus one case `collect` listing what did not come back (if anything).

    Test cases are named `<config id> <parameters>` in the class `sweep.<cluster>.<run id>` (so that
    the reports of two clusters or runs in one pipeline stay apart)."""
    where = f"{cluster}.{run_id}" if cluster else run_id
    suite = ET.Element("testsuite", name=xml_text(f"sweep {where}"))
    n = {"failures": 0, "skipped": 0, "errors": 0}
    classname = xml_text(f"sweep.{where}")
    for r in rows:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=classname,
            name=xml_text(f"{r['config_id']} {_params_text(r)}"),
            time=str(r["duration_s"] or 0),
        )
        log = tail(r["log"], caps.log_tail_bytes, caps.log_tail_lines)
        if r["problems"]:
            error = ET.SubElement(
                case, "error", message="bad results: " + xml_text(printable(r["problems"][0])), type="bad-results"
            )
            error.text = xml_text(
                "\n".join(printable(p, 500) for p in r["problems"]) + ("\n--- log ---\n" + log if log else "")
            )
            n["errors"] += 1
        elif r["status"] == "completed":
            text = printable(", ".join(f"{k}={v}" for k, v in r["metrics"].items() if v is not None), 4000)
            ET.SubElement(case, "system-out").text = xml_text(text)
        elif r["status"] not in rundir.FINAL:  # pending, requeued, running
            ET.SubElement(case, "skipped", message=f"still {r['status']} when collected")
            n["skipped"] += 1
        else:
            fix = rundir.FIXES.get(r["status"], "") if r["status"] != "failed" else ""  # a SLURM state: its fix
            message = f"{r['status']} (exit {r['exit_code']})" + (f": {fix}" if fix else "")
            failure = ET.SubElement(case, "failure", message=xml_text(message), type=r["status"])
            failure.text = xml_text(log or "(no log)")
            n["failures"] += 1
    if lost:
        case = ET.SubElement(suite, "testcase", classname=classname, name="collect: what did not come back")
        error = ET.SubElement(case, "error", message=xml_text(printable(lost[0])), type="incomplete")
        more = f"\n... and {len(lost) - MAX_LISTED:,} more (summary.json)" if len(lost) > MAX_LISTED else ""
        error.text = xml_text("\n".join(printable(x, 500) for x in lost[:MAX_LISTED]) + more)
        n["errors"] += 1
    suite.set("tests", str(len(suite)))
    for key, value in n.items():
        suite.set(key, str(value))
    buf = io.StringIO()
    ET.ElementTree(suite).write(buf, encoding="unicode", xml_declaration=True)
    return buf.getvalue().encode("utf-8")


def metrics_lines(rows: list[dict], transfer: dict[str, int] | None = None, prefix: str = "") -> list[str]:
    """GitLab metrics report: counts per state, the transfer counts (collect only), then min and mean
    of each finite metric of completed configurations; every name starts with `prefix` + "_" if given."""
    lines = [f"configurations_{s.replace('-', '_')} {c}" for s, c in counts(rows).items()]
    lines.append(f"configurations_bad_results {sum(bool(r['problems']) for r in rows)}")
    lines += [f"results_{name} {transfer[name]}" for name in TRANSFER] if transfer is not None else []
    values: dict[str, list[float]] = {}
    for r in rows:
        if r["status"] == "completed" and not r["problems"]:
            for name, v in r["metrics"].items():
                if v is not None:
                    values.setdefault(metric_name(name), []).append(v)
    for name in sorted(values):
        vs = values[name]
        lines += [f"{name}_min {min(vs):.6g}", f"{name}_mean {sum(vs) / len(vs):.6g}"]
    return [f"{metric_name(prefix)}_{line}" for line in lines] if prefix else lines


def public_row(r: dict) -> dict:
    """A row as summary.json holds it (no raw log bytes)."""
    return {k: v for k, v in r.items() if k != "log"}


def summary_json(
    rows: list[dict],
    run_id: str,
    problems: list[str],
    transfer: dict[str, int] | None = None,
    skipped: Sequence[tuple[str, str]] = (),
    refused: Sequence[tuple[str, str]] = (),
    stopped: str | None = None,
    about: dict | None = None,
) -> bytes:
    """Strict JSON (allow_nan=False): the rows, their counts, the run's problems, the transfer counts
    (TRANSFER; collect only) with the members behind them: `skipped` (data that did not come back) and
    `refused` (links, devices, FIFOs), and `about` (cluster, commit, pipeline, created: run.json)."""

    def listed(items: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"name": printable(n, 300), "reason": printable(why, 300)} for n, why in items[:MAX_JSON_LISTED]]

    doc = {
        "run_id": run_id,
        **(about or {}),
        "counts": counts(rows),
        "configurations": [public_row(r) for r in rows],
        "problems": [printable(p, 500) for p in problems],
        "transfer": transfer,
        "skipped": listed(skipped),
        "refused": listed(refused),
        "stopped": stopped,
    }
    # not sort_keys: parameters keep the order of parameters.json, which is the order people read them in
    return (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode("utf-8")


def summary_csv(rows: list[dict]) -> bytes:
    """One row per configuration: id, status, duration, parameters, metrics, problems; formula-safe cells."""
    param_names = list(dict.fromkeys(k for r in rows for k in r["parameters"]))
    metric_names = sorted({k for r in rows for k in r["metrics"]})
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(
        [csv_cell(c) for c in ["config_id", "status", "duration_s", *param_names, *metric_names, "problems"]]
    )
    for r in rows:
        writer.writerow(
            [
                csv_cell(c)
                for c in [
                    r["config_id"],
                    r["status"],
                    r["duration_s"],
                    *(r["parameters"].get(n, "") for n in param_names),
                    *(r["metrics"].get(n) for n in metric_names),
                    "; ".join(printable(p, 300) for p in r["problems"]),
                ]
            ]
        )
    return buf.getvalue().encode("utf-8")
