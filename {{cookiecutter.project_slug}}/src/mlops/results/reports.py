"""The reports of a run, written from validated rows (mlops.results.read.run_rows) only.

    junit.xml     GitLab unit test report (JUnit XML): one test case per configuration; a failed one
                  carries the tail of its log, one with bad results an <error> with the reasons;
                  well-formed XML 1.0 whatever the log holds
    metrics.txt   GitLab metrics report: `name value` lines, names [a-zA-Z_][a-zA-Z0-9_]*
    summary.csv   one row per configuration; no cell is read as a formula by a spreadsheet
    summary.json  strict JSON (no NaN/Infinity: a non-finite metric is null)

Every file is written to a temp name created with O_EXCL|O_NOFOLLOW in the output directory's fd
and renamed over the old one, so nothing is ever written through a link.
"""

from __future__ import annotations

import csv
import io
import json
import os
from xml.etree import ElementTree as ET

from .. import rundir
from .caps import DEFAULT, Caps
from .text import csv_cell, metric_name, printable, tail, xml_text

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LISTED = 200  # skipped members named in junit.xml (all of them are in summary.json up to MAX_JSON_LISTED)
MAX_JSON_LISTED = 10_000


def write_file(dir_fd: int, name: str, data: bytes) -> None:
    """Replace `name` in the directory `dir_fd` by `data`, never writing through a link (temp + rename)."""
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def counts(rows: list[dict]) -> dict[str, int]:
    """State -> number of configurations (rundir.count_states)."""
    return rundir.count_states([r["status"] for r in rows])


def _params_text(row: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in row["parameters"].items())


def junit(rows: list[dict], run_id: str, lost: list[str], caps: Caps = DEFAULT) -> bytes:
    """JUnit XML: configurations, plus one case `collect` listing what did not come back (if anything)."""
    suite = ET.Element("testsuite", name=xml_text(f"sweep {run_id}"))
    n = {"failures": 0, "skipped": 0, "errors": 0}
    classname = xml_text(f"sweep.{run_id}")
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
            text = ", ".join(f"{k}={v}" for k, v in r["metrics"].items() if v is not None)
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


def metrics_lines(rows: list[dict], skipped: int = 0) -> list[str]:
    """GitLab metrics report: counts per state, then min and mean of each finite metric of completed runs."""
    lines = [f"configurations_{s.replace('-', '_')} {c}" for s, c in counts(rows).items()]
    lines.append(f"configurations_bad_results {sum(bool(r['problems']) for r in rows)}")
    lines.append(f"results_members_skipped {skipped}")
    values: dict[str, list[float]] = {}
    for r in rows:
        if r["status"] == "completed" and not r["problems"]:
            for name, v in r["metrics"].items():
                if v is not None:
                    values.setdefault(metric_name(name), []).append(v)
    for name in sorted(values):
        vs = values[name]
        lines += [f"{name}_min {min(vs):.6g}", f"{name}_mean {sum(vs) / len(vs):.6g}"]
    return lines


def public_row(r: dict) -> dict:
    """A row as summary.json holds it (no raw log bytes)."""
    return {k: v for k, v in r.items() if k != "log"}


def summary_json(
    rows: list[dict], run_id: str, problems: list[str], skipped: list[tuple[str, str]], stopped: str | None = None
) -> bytes:
    """Strict JSON (allow_nan=False): the rows, their counts, the run's problems and the skipped members."""
    doc = {
        "run_id": run_id,
        "counts": counts(rows),
        "configurations": [public_row(r) for r in rows],
        "problems": [printable(p, 500) for p in problems],
        "skipped": [{"name": printable(n, 300), "reason": printable(why, 300)} for n, why in skipped[:MAX_JSON_LISTED]],
        "skipped_count": len(skipped),
        "stopped": stopped,
    }
    return (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


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


def write_all(out_dir: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Write each name -> bytes into out_dir (which must be a plain directory, not a link)."""
    fd = os.open(out_dir, DIR_FLAGS)
    try:
        for name, data in files.items():
            write_file(fd, name, data)
    finally:
        os.close(fd)
