"""Checks shared by the results tests (unit, on a local hostile run) and the e2e hostile collect:
canary secrets, the rows of support.hostile_results, reports that stay safe to read."""

from __future__ import annotations

import csv
import json
import os
import re
import site
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mlops.results import caps
from mlops.results.text import metric_name

from . import hostile_results as hostile

SECRET = "-----BEGIN OPENSSH PRIVATE KEY-----\ncanary-key-material-5f1e2d\n-----END OPENSSH PRIVATE KEY-----\n"


CANARY_ENV = {
    "HPC_TOTP_SECRET": "CANARYTOTPSECRETAAAAAAAAAAAAAAAA",
    "HPC_OTP": "918273",
    "WANDB_API_KEY": "canary-wandb-key-0123456789abcdef0123456789",
    "GITLAB_TOKEN": "glpat-canary-gitlab",
    "CI_JOB_TOKEN": "canary-ci-job-token",
}


GITLAB_METRIC = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]* -?[0-9.e+-]+")


def file_tree(root: Path, reports: tuple[str, ...] = ()) -> dict[str, str]:
    """Every entry below root except the `reports` at its top: relative path -> 'f'/'d' (anything
    else fails the test; what came back is 0600/0700, whatever mode the stream said)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.parent == root and name in reports:
                continue
            mode = os.lstat(p).st_mode
            assert stat.S_ISREG(mode) or stat.S_ISDIR(mode), f"{p} is neither a file nor a directory"
            assert stat.S_IMODE(mode) in (0o600, 0o700), f"{p} has mode {oct(mode)}"
            out[str(p.relative_to(root))] = "d" if stat.S_ISDIR(mode) else "f"
    return out


def check_rows(rows: list[dict], problems: list[str]) -> None:
    by_id = {r["config_id"]: r for r in rows}
    for cid, mae in hostile.GOOD.items():
        r = by_id[cid]
        assert r["status"] == "completed" and not r["problems"] and r["metrics"]["mae"] == mae, r
    odd = by_id[hostile.ODD]
    assert not odd["problems"] and odd["metrics"]["mae"] is None and odd["metrics"]["ok"] == 3
    assert "evil 1\\x0aconfigurations_failed" in odd["metrics"]
    for cid, fragments in hostile.BAD.items():
        assert any(f in " ".join(by_id[cid]["problems"]) for f in fragments), (cid, by_id[cid]["problems"])
    for cid in hostile.FAILED:
        assert by_id[cid]["status"] == "failed"
    assert len(problems) >= len(hostile.BAD_INDEX)
    assert len(rows) == len(hostile.GOOD) + 1 + len(hostile.BAD) + len(hostile.FAILED)


def assert_reports_safe(out: Path, secrets: list[str]) -> None:
    suite = ET.parse(out / "junit.xml").getroot()
    names = " ".join(tc.get("name") for tc in suite.iter("testcase"))
    for cid in [*hostile.GOOD, hostile.ODD, *hostile.BAD, *hostile.FAILED]:
        assert cid in names
    assert int(suite.get("errors")) >= len(hostile.BAD) and int(suite.get("failures")) == len(hostile.FAILED)
    huge = next(tc for tc in suite.iter("testcase") if tc.get("name").startswith("c000000002"))
    assert (
        len(huge.find("failure").text) <= caps.defaults().log_tail_bytes
        and "END-OF-HUGE-LOG" in huge.find("failure").text
    )
    control = next(tc for tc in suite.iter("testcase") if tc.get("name").startswith("c000000001"))
    assert "Traceback: diverged" in control.find("failure").text
    summary = json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert {r["config_id"] for r in summary["configurations"]} >= set(hostile.GOOD)
    for line in (out / "metrics.txt").read_text().splitlines():
        assert GITLAB_METRIC.fullmatch(line), line
    for row in csv.reader((out / "summary.csv").open(newline="")):
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")) and "\n" not in cell, cell
            assert not cell.startswith("-") or re.fullmatch(r"-[0-9.e+-]+", cell), cell
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for path in out.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            for s in secrets:
                assert s.encode() not in data, f"{s!r} in {path}"


def pth_files() -> set[str]:
    return {str(p) for d in site.getsitepackages() if os.path.isdir(d) for p in Path(d).glob("*.pth")}


def collected_run(out: Path, run_id: str) -> Path:
    """OUT/<cluster>/<run-id>/ of `mlops collect --out OUT` (contract E): the one cluster directory that
    holds `run_id`; its reports (junit.xml, metrics.txt, summary.*, sweep.png) sit beside what came back."""
    (run,) = [p for p in Path(out).glob(f"*/{run_id}") if p.is_dir()]
    return run


def metrics_of(run: Path) -> dict[str, str]:
    """metrics.txt of a collected run as {name: value}, without the cluster prefix of every name."""
    prefix = metric_name(run.parent.name) + "_"  # a cluster named "127" (127.0.0.1) gives "m_127_"
    lines = (run / "metrics.txt").read_text().splitlines()
    assert all(line.startswith(prefix) for line in lines), lines
    return dict(line[len(prefix) :].split() for line in lines)
