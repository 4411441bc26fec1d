"""The data stage writes the same data set every time."""

import csv
import hashlib
import json

from conftest import run_stage


def test_prepare_writes_a_deterministic_series(project_dir, tmp_path):
    run_stage("data", project_dir)
    series = project_dir / "data" / "series.csv"
    rows = list(csv.reader(series.open()))
    meta = json.loads((project_dir / "data" / "meta.json").read_text())
    assert rows[0] == ["timestamp", "load"] and len(rows) - 1 == meta["rows"] > 1000
    assert meta["sha256"] == hashlib.sha256(series.read_bytes()).hexdigest()
    values = [float(r[1]) for r in rows[1:]]
    assert 50 < min(values) < max(values) < 200
    again = tmp_path / "again"
    run_stage("data", again)
    assert (again / "data" / "series.csv").read_bytes() == series.read_bytes()
