"""A small, final, well-formed run directory as the cluster holds it (scheduler `none`), for the results
tests that are not about hostile data: layout, links in the output path, W&B's own links, the plot and
table, `mlops runs` / `mlops compare`.

`make(run, ...)` writes run.json, envs/index.json (+ ids.txt), state/jobs.json (one submitted attempt),
a completed task record and metrics.json per configuration, and per configuration the four symbolic
links W&B 0.31 writes in an offline run (recorded from `wandb.init(mode="offline")` here:
wandb/latest-run, wandb/debug.log, wandb/debug-internal.log, <run>/logs/debug-core.log).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# window varies and matters, alpha varies and does nothing, horizon is fixed.
CONFIGS = {
    "a1b2c3d4e5": {"window": 6, "alpha": 0.1, "horizon": 24},
    "b1b2c3d4e5": {"window": 12, "alpha": 0.1, "horizon": 24},
    "c1b2c3d4e5": {"window": 24, "alpha": 0.1, "horizon": 24},
    "d1b2c3d4e5": {"window": 6, "alpha": 1.0, "horizon": 24},
    "e1b2c3d4e5": {"window": 12, "alpha": 1.0, "horizon": 24},
    "f1b2c3d4e5": {"window": 24, "alpha": 1.0, "horizon": 24},
}
WANDB_LINKS_PER_CONFIG = 4


def mae(params: dict) -> float:
    """The made-up metric: lower with a longer window, independent of alpha."""
    return round(1.0 / params["window"], 6)


def make(
    run: Path,
    commit: str = "0123456789abcdef0123456789abcdef01234567",
    cluster: str = "uni",
    configs: dict[str, dict] | None = None,
    offset: float = 0.0,
    wandb_links: bool = True,
) -> Path:
    """Fill `run` (created); every configuration completed with mae(params) + offset. Returns `run`."""
    configs = CONFIGS if configs is None else configs
    run = Path(run)
    for sub in ("envs", "state/tasks", "results"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    ids = list(configs)
    (run / "run.json").write_text(
        json.dumps(
            {
                "run_id": run.name,
                "mode": "cluster",
                "commit": commit,
                "pipeline": "4242",
                "cluster": cluster,
                "created": "2026-12-05T12:00:00+00:00",
            }  # fmt: skip
        )
    )
    entries = [{"index": i, "config_id": cid, "parameters": configs[cid]} for i, cid in enumerate(ids)]
    (run / "envs" / "index.json").write_text(json.dumps({"configurations": entries}))
    (run / "envs" / "ids.txt").write_text("".join(f"{cid}\n" for cid in ids))
    attempt = {
        "attempt": 1,
        "kind": "none",
        "status": "submitted",
        "indices": list(range(len(ids))),
        "config_ids": ids,
        "model": [{"job": None, "offset": 0, "indices": list(range(len(ids)))}],
    }
    (run / "state" / "jobs.json").write_text(json.dumps([attempt]))
    for cid, params in configs.items():
        res = run / "results" / cid
        res.mkdir(exist_ok=True)
        (res / "metrics.json").write_text(json.dumps({"mae": mae(params) + offset}))
        (res / "log").write_text(f"trained {cid}\n")
        (run / "state" / "tasks" / f"{cid}.json").write_text(
            json.dumps({"config_id": cid, "status": "completed", "exit_code": 0, "duration_s": 1.0, "attempt": 1})
        )
        if wandb_links:
            _wandb_offline_run(res / "wandb", f"{run.name}-{cid}")
    return run


def _wandb_offline_run(wandb: Path, run_id: str) -> None:
    name = f"offline-run-20261205_124642-{run_id}"
    logs = wandb / name / "logs"
    logs.mkdir(parents=True)
    for log in ("debug.log", "debug-internal.log"):
        (logs / log).write_text("w&b log\n")
        os.symlink(f"{name}/logs/{log}", wandb / log)
    (wandb / name / f"run-{run_id}.wandb").write_bytes(b"offline run data")
    os.symlink(name, wandb / "latest-run")
    os.symlink("/root/.cache/wandb/logs/core-debug-20261205_124642.log", logs / "debug-core.log")


if __name__ == "__main__":  # python3 good_run.py RUN_DIR [RANDOM_BYTES]: as the cluster user in e2e tests
    import sys

    made = make(Path(sys.argv[1]), wandb_links=False)
    if len(sys.argv) > 2:  # incompressible data in the first configuration: the stream is that large
        (made / "results" / next(iter(CONFIGS)) / "model.bin").write_bytes(os.urandom(int(sys.argv[2])))
