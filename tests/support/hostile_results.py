"""A run directory as hostile student code could leave it (issue 11), for the hostile-results tests.

    python3 hostile_results.py RUN_DIR SECRET_FILE SITE_PACKAGES   (run as the cluster user in the e2e test)

`make(run, secret_file, site_packages)` fills RUN_DIR (created) with: good configurations (GOOD), a
NaN/odd-names one (ODD, well-formed too), bad configurations (BAD: config id -> the reason collect
must give), bad index entries, links of every shape (absolute, relative escapes, a chain through
links extracted later, links at the runner's secret file and at a venv's site-packages), a hard
link, a FIFO, odd names (newline, non-UTF-8 bytes, very long), a sparse file over the default
per-file cap (the bomb) and one under it, a 20 MB one-line log, a log with control characters.
Only the standard library: it runs on the cluster side too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

GOOD = {"a000000001": 0.5, "a000000002": 0.25, "a000000003": 0.75}
ODD = "a000000004"  # NaN/Infinity and odd metric names, but well-formed: reported, values null
BAD = {  # config id -> fragments of the reason, one of which must be reported (collect / local run)
    "b000000001": ("not a regular file", "a directory"),  # metrics.json is a directory
    "b000000002": ("not UTF-8",),
    "b000000003": ("not valid JSON",),  # a 5,000-digit integer (Python's int-string limit)
    "b000000004": ("nested too deeply",),
    "b000000005": ("task record is not an object",),  # state/tasks/<id>.json is `null`
    "b000000006": ("metrics.json: missing", "a FIFO"),  # metrics.json is a FIFO (refused)
    "b000000007": ("metrics.json: missing", "a symbolic link"),  # metrics.json links to the secret
    "b000000008": ("larger than",),  # metrics.json of 2 MB
    "b000000009": ("not one of",),  # status "pwned"
}
FAILED = {"c000000001": "control", "c000000002": "huge"}  # failed configurations with nasty logs
SPARSE_BIG = 512 << 20  # over the default max_file_bytes (256 MiB): the cluster does not send it
SPARSE_SMALL = 8 << 20  # under every cap: kept
BAD_INDEX = [  # entries of envs/index.json that name no usable configuration
    {"index": 100, "config_id": "/some/dir/config", "parameters": {}},
    {"index": 101, "config_id": "../../../tmp/x", "parameters": {}},
    {"config_id": "d000000001", "parameters": {}},  # no index
    None,
    {"index": "7", "config_id": "d000000002", "parameters": {}},
    {"index": 102, "config_id": "d000000003", "parameters": {"evil\nname": 1}},
]


def make(run: Path, secret_file: str, site_packages: str) -> None:
    run = Path(run)
    for sub in ("envs", "state/tasks", "results"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    (run / "run.json").write_text(json.dumps({"run_id": run.name, "mode": "hostile"}))
    ids = [*GOOD, ODD, *BAD, *FAILED]
    entries = [
        {"index": i, "config_id": cid, "parameters": {"alpha": i, "label": '=HYPERLINK("http://x")'}}
        for i, cid in enumerate(ids)
    ]
    (run / "envs" / "index.json").write_text(json.dumps({"configurations": entries + BAD_INDEX}))
    (run / "envs" / f"{ids[0]}.env").write_text("SECRET_INPUT=stays-on-the-cluster\n")
    jobs = [
        {
            "attempt": 1,
            "kind": "none",
            "pid": "not-a-number",
            "config_ids": ids,
            "model": [{"job": None, "offset": 0, "indices": list(range(len(ids)))}],
        }
    ]
    (run / "state" / "jobs.json").write_text(json.dumps(jobs))

    def res(cid: str) -> Path:
        d = run / "results" / cid
        d.mkdir(exist_ok=True)
        return d

    def record(cid: str, status, exit_code: int = 0) -> None:
        (run / "state" / "tasks" / f"{cid}.json").write_text(
            json.dumps({"config_id": cid, "status": status, "exit_code": exit_code, "duration_s": 1.5, "attempt": 1})
        )

    for cid, mae in GOOD.items():
        (res(cid) / "metrics.json").write_text(json.dumps({"mae": mae, "rmse": mae * 2}))
        (res(cid) / "log").write_text(f"ok {cid}\n")
        record(cid, "completed")
    # links of every shape, in good configurations (they are refused; the configuration stays good)
    g = res("a000000001")
    for name, target in (
        ("abs-secret", secret_file),
        ("abs-root", "/"),
        ("up", "../../../../.."),
        ("pth", os.path.join(site_packages, "evil.pth")),
        ("dangling", "nowhere/x"),
    ):
        os.symlink(target, g / name)
    (g / "a").mkdir()
    os.symlink("y/../..", g / "a" / "x")  # the chain of issue 11: a/x -> y/../.. with a/y -> .
    os.symlink(".", g / "a" / "y")
    os.symlink("../../../../../../../../..", g / "a" / "z")
    (g / "files").mkdir()
    os.symlink(secret_file, g / "files" / "model.ckpt")  # what wandb's run.save(abs path) writes
    os.link(g / "metrics.json", g / "hard-link")
    os.mkfifo(g / "fifo")
    (g / "files" / "name\nwith newline").write_text("odd\n")
    with open(os.path.join(os.fsencode(g / "files"), b"not-utf8-\xff\xfe.bin"), "wb") as fh:
        fh.write(b"odd\n")
    long_dir = g / "files"
    for _ in range(6):
        long_dir = long_dir / ("d" * 200)
    long_dir.mkdir(parents=True)
    (long_dir / "deep.txt").write_text("too deep\n")
    g2 = res("a000000002")
    for path, size in ((g2 / "bomb.ckpt", SPARSE_BIG), (g2 / "sparse.bin", SPARSE_SMALL)):
        with open(path, "wb") as fh:
            fh.truncate(size)  # sparse: no disk used, compresses to almost nothing
    # wandb-like offline run whose .synced marker came from the cluster (must not count as synced)
    off = g2 / "wandb" / "offline-run-20260101_000000-x"
    off.mkdir(parents=True)
    (off / "run-x.wandb").write_bytes(b"garbage, not a wandb file")
    (off / "run-x.wandb.synced").write_text("")
    (off / "logs").mkdir()
    os.symlink(os.path.expanduser("~/.cache/wandb/logs/core-debug.log"), off / "logs" / "debug-core.log")

    (res(ODD) / "metrics.json").write_text(
        '{"mae": NaN, "rmse": Infinity, "mase": -Infinity, '
        '"evil 1\\nconfigurations_failed": 1, "=HYPERLINK(\\"http://e\\")": 2, '
        '"ok": 3}'
    )
    record(ODD, "completed")

    b = {cid: res(cid) for cid in BAD}
    (b["b000000001"] / "metrics.json").mkdir()
    (b["b000000002"] / "metrics.json").write_bytes(b'{"mae": "\xff\xfe"}')
    (b["b000000003"] / "metrics.json").write_text('{"mae": ' + "9" * 5000 + "}")
    (b["b000000004"] / "metrics.json").write_text("[" * 100_000 + "]" * 100_000)
    (b["b000000005"] / "metrics.json").write_text('{"mae": 1.0}')
    os.mkfifo(b["b000000006"] / "metrics.json")
    os.symlink(secret_file, b["b000000007"] / "metrics.json")
    (b["b000000008"] / "metrics.json").write_text('{"mae": 1.0, "pad": "' + "x" * 2_000_000 + '"}')
    (b["b000000009"] / "metrics.json").write_text('{"mae": 1.0}')
    for cid in BAD:
        if cid == "b000000005":
            (run / "state" / "tasks" / f"{cid}.json").write_text("null")
        else:
            record(cid, "pwned" if cid == "b000000009" else "completed")
    os.symlink(secret_file, b["b000000001"] / "log")  # a log that is a link to the runner's key

    c1, c2 = res("c000000001"), res("c000000002")
    (c1 / "log").write_bytes(
        b"start\n\x00\x01\x02\x1b[31mred\x1b[0m \x0b\x0c\xff\xfe bad bytes\n"
        b"]]></failure><injected/>\nTraceback: diverged\n"
    )
    with open(c2 / "log", "wb") as fh:
        fh.write(b"x" * (20 << 20))  # 20 MB, one line
        fh.write(b" END-OF-HUGE-LOG\n")
    record("c000000001", "failed", 1)
    record("c000000002", "failed", 1)
    # a task record that is a directory, and one that is a link to the secret
    (run / "state" / "tasks" / "e000000001.json").mkdir()
    os.symlink(secret_file, run / "state" / "tasks" / "e000000002.json")


if __name__ == "__main__":
    make(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
