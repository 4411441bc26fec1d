"""`mlops run --local`: the whole sweep on this machine, without containers or accounts.

It runs exactly the stages' entry points (read from their Dockerfiles) in the stage folders, with
the same environment contract the containers get: params -> data -> one model run per env file.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from . import config as config_mod
from . import params, report, rundir, stages
from .errors import WorkFailed

LOG_TAIL_LINES = 5


class StageFailed(WorkFailed):
    pass


def _stage_env(cfg: config_mod.Config, run: Path, run_id: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PROJECT_DIR": str(run),
        "RUN_ID": run_id,
        # Local runs never wait on a network: online mode is for the cluster's login node sync.
        "WANDB_MODE": "disabled" if cfg["wandb"].get("mode") == "disabled" else "offline",
        "WANDB_PROJECT": cfg["wandb"].get("project", cfg.slug),
        "WANDB_RUN_GROUP": run_id,
        "WANDB_SILENT": "true",
    })
    if cfg["wandb"].get("entity"):
        env["WANDB_ENTITY"] = cfg["wandb"]["entity"]
    return env


def _run_stage(cfg, name: str, env: dict, log: Path) -> None:
    stage = stages.BY_NAME[name]
    argv = stages.entrypoint(cfg.root, stage)
    with log.open("wb") as fh:
        rc = subprocess.run(argv, cwd=cfg.root / name, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise StageFailed(f"{name} stage failed (exit {rc}); log {log}:\n{tail(log)}")


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _train_one(cfg, run: Path, entry: dict, base_env: dict) -> dict:
    cid = entry["config_id"]
    env = dict(base_env)
    env.update(params.read_env_file(run / "envs" / f"{cid}.env"))
    result_dir = run / "results" / cid
    result_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rundir.write_task_state(run, cid, {"status": "running", "started": started})
    argv = stages.entrypoint(cfg.root, stages.BY_NAME["model"])
    with (result_dir / "log").open("wb") as fh:
        rc = subprocess.run(argv, cwd=cfg.root / "model", env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    has_metrics = (result_dir / "metrics.json").is_file()
    state = {"status": "completed" if rc == 0 and has_metrics else "failed", "exit_code": rc,
             "started": started, "duration_s": round(time.time() - started, 3)}
    rundir.write_task_state(run, cid, state)
    return {**state, "config_id": cid}


def run_local(root: Path | None = None, jobs: int = 1, run_id: str | None = None,
              out=sys.stderr) -> tuple[Path, int]:
    """Run the whole sweep; returns (run dir, number of failed configurations)."""
    cfg = config_mod.load(root)
    params.validate(cfg.root / "params" / "parameters.json")  # fail before creating anything
    run_id = run_id or rundir.new_run_id()
    run = rundir.create(cfg.root / "runs", run_id, {
        "mode": "local", "commit": rundir.git_commit(cfg.root), "pipeline": None,
        "parameters_sha256": params.file_sha256(cfg.root / "params" / "parameters.json"),
    })
    env = _stage_env(cfg, run, run_id)
    print(f"run {run_id}: {run}", file=out)
    for name in ("params", "data"):
        t0 = time.time()
        _run_stage(cfg, name, env, run / "state" / f"{name}.log")
        print(f"  {name:<6} done in {time.time() - t0:.1f}s", file=out)
    index = params.read_index(run / "envs")
    total, failed = len(index), 0
    print(f"  model  {total} configurations, {jobs} at a time", file=out)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_train_one, cfg, run, entry, env) for entry in index]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            cid, ok = result["config_id"], result["status"] == "completed"
            failed += not ok
            line = f"  [{done:>{len(str(total))}}/{total}] {'ok  ' if ok else 'FAIL'} {cid} {result['duration_s']:.1f}s"
            if not ok:
                line += f" (exit {result['exit_code']}), log: {run / 'results' / cid / 'log'}"
                line += "".join(f"\n        | {l}" for l in tail(run / "results" / cid / "log").splitlines())
            print(line, file=out, flush=True)
    _, summary_csv = report.write_summary(run)
    print(f"  {total - failed}/{total} completed; summary: {summary_csv}", file=out)
    return run, failed
