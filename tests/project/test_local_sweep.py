"""`mlops run --local`: the whole sweep on this machine; a failing configuration loses nothing.

(Moved from the rendered project's tests/ in 0.3: the machinery is tested in the template. The
project keeps one quick smoke sweep of its own, tests/test_smoke_sweep.py.)
"""

import base64
import csv
import json
import secrets
import subprocess
import sys

import pytest

from support.local_run import env_for


def mlops(project, *args):
    return subprocess.run(
        [sys.executable, "-m", "mlops", *args], cwd=project, capture_output=True, text=True, env=env_for(project)
    )


def only_run(project):
    (run,) = (project / "runs").iterdir()
    return run


def test_local_sweep_produces_every_result(project):
    result = mlops(project, "run", "--local", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    run = only_run(project)
    index = json.loads((run / "envs" / "index.json").read_text())["configurations"]
    summary = json.loads((run / "results" / "summary.json").read_text())
    assert summary["counts"]["completed"] == len(index) > 1
    for entry in index:
        assert (run / "results" / entry["config_id"] / "metrics.json").is_file()
    rows = list(csv.DictReader((run / "results" / "summary.csv").open()))
    assert {r["config_id"] for r in rows} == {e["config_id"] for e in index}
    assert all(float(r["mae"]) > 0 for r in rows)
    assert f"[{len(index)}/{len(index)}]" in result.stderr
    provenance = json.loads((run / "run.json").read_text())
    assert provenance["mode"] == "local" and len(provenance["parameters_sha256"]) == 64
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True)
    assert provenance["commit"] == head.stdout.strip()  # the render's first commit, not "unknown"


def test_a_failing_configuration_does_not_stop_the_others(project):
    path = project / "params" / "parameters.json"
    doc = json.loads(path.read_text())
    names = set(doc.get("fixed", {})) | set(doc.get("grid", {})) | {n for g in doc.get("zip", []) for n in g}
    # An explicit configuration whose window is longer than the series: train.py fails on it.
    first = params_first(project)
    doc.setdefault("configurations", []).append(
        {**{n: first[n] for n in names if n not in doc.get("fixed", {})}, "window": 100000}
    )
    path.write_text(json.dumps(doc))
    result = mlops(project, "run", "--local", "--jobs", "2")
    assert result.returncode == 1
    run = only_run(project)
    summary = json.loads((run / "results" / "summary.json").read_text())
    failed = [c for c in summary["configurations"] if c["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["parameters"]["window"] == 100000
    assert summary["counts"]["completed"] == len(summary["configurations"]) - 1
    assert "FAIL" in result.stderr and "too short for window=100000" in result.stderr


def params_first(project):
    from mlops import params

    return params.expand(params.validate(project / "params" / "parameters.json"))[0].parameters


def test_bad_parameters_stop_before_anything_is_written(project):
    (project / "params" / "parameters.json").write_text('{"grid": {"window": "24"}}')
    result = mlops(project, "run", "--local")
    assert result.returncode == 2
    assert "$.grid.window: '24' is not of type 'array'" in result.stderr
    assert not (project / "runs").exists()


HOSTILE_TRAIN = r"""
import json, os, pathlib, sys
res = pathlib.Path(os.environ["RESULT_DIR"])
res.mkdir(parents=True, exist_ok=True)
(res / "env.json").write_text(json.dumps(dict(os.environ)))
secret = pathlib.Path(__file__).with_name("secret_path.txt").read_text().strip()
kind = int(os.environ["CONFIG_ID"], 16) % 3
if kind == 0:   # well-formed, with NaN and names meant to break the reports
    (res / "metrics.json").write_text('{"mae": 0.5, "rmse": NaN, "evil 1\\nconfigurations_failed": 1, '
                                      '"=HYPERLINK(\\"http://e\\")": 2}')
    os.symlink(secret, res / "model.ckpt")
elif kind == 1:  # metrics.json is a link to the secret; the log is huge and full of control characters
    os.symlink(secret, res / "metrics.json")
    sys.stdout.write("\x00\x01\x1b[31m" + "x" * 3_000_000 + "\n")
else:            # metrics.json is a FIFO: reading it would block forever
    os.mkfifo(res / "metrics.json")
"""
# Canary values made at run time: a literal one in this committed file would be a finding of the
# project's own secret-scan (detect-secrets), so none of them, nor a key header, is written here whole.
CANARIES = {
    "HPC_TOTP_SECRET": base64.b32encode(secrets.token_bytes(20)).decode(),
    "HPC_OTP": "918273",
    "WANDB_API_KEY": secrets.token_hex(20),
    "GITLAB_TOKEN": "-".join(("glpat", secrets.token_hex(10))),
    "CI_JOB_TOKEN": secrets.token_hex(16),
}
KEY_BODY = secrets.token_hex(12)
KEY_HEADER = "-----" + " ".join(("BEGIN", "OPENSSH", "PRIVATE", "KEY")) + "-----"


def test_hostile_research_code_sees_no_secret_and_cannot_break_the_summary(project, tmp_path):
    """Issue 11 for `mlops run --local`: the research code gets no secret, and what it leaves in the
    run directory (links, FIFOs, NaN, formula names, huge logs) is read as untrusted data."""
    secret = tmp_path / "id_canary"
    secret.write_text(f"{KEY_HEADER}\n{KEY_BODY}\n")
    (project / "model" / "secret_path.txt").write_text(str(secret))
    (project / "model" / "train.py").write_text(HOSTILE_TRAIN)
    env = {**env_for(project), **CANARIES, "HPC_SSH_PRIVATE_KEY": str(secret)}
    result = subprocess.run(
        [sys.executable, "-m", "mlops", "run", "--local", "--jobs", "2"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    run = only_run(project)
    index = json.loads((run / "envs" / "index.json").read_text())["configurations"]
    kinds = {e["config_id"]: int(e["config_id"], 16) % 3 for e in index}
    assert result.returncode == (0 if set(kinds.values()) == {0} else 1), result.stderr
    for cid in kinds:
        seen = json.loads((run / "results" / cid / "env.json").read_text())
        assert not {k for k in seen if k.startswith(("HPC_", "GITLAB_", "CI_"))} and "WANDB_API_KEY" not in seen
    summary = json.loads(
        (run / "results" / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in summary.json")
    )
    rows = {r["config_id"]: r for r in summary["configurations"]}
    assert set(rows) == set(kinds)
    for cid, kind in kinds.items():
        assert bool(rows[cid]["problems"]) == (kind != 0), rows[cid]
        if kind == 0:
            assert rows[cid]["metrics"]["mae"] == 0.5 and rows[cid]["metrics"]["rmse"] is None
    for line in csv.reader((run / "results" / "summary.csv").open(newline="")):
        assert not any(cell.startswith(("=", "+", "@")) for cell in line), line
    assert (run / "results" / "sweep.png").is_file()
    outputs = result.stderr + "".join(p.read_text(errors="replace") for p in (run / "results").glob("summary.*"))
    assert KEY_BODY not in outputs and not any(v in outputs for v in CANARIES.values())
    assert "not completed or bad" in result.stderr or set(kinds.values()) == {0}
    assert max(len(line) for line in result.stderr.splitlines()) < 1000
