"""`mlops run --local`: the whole sweep on this machine, without containers or accounts.

It runs exactly the stages' entry points (read from their Dockerfiles) in the stage folders, with
the same environment contract the containers get: params -> data -> one model run per env file.

The research code gets an allow-listed environment (`child_env`): the stage contract (PROJECT_DIR,
RUN_ID, WANDB_MODE/PROJECT/ENTITY/RUN_GROUP, then the env file of each configuration) plus what a
program needs to run here (PASSED: PATH, HOME, locale, temp dir, proxies and CA bundles, Python and
thread/cache settings). Never a secret: no HPC_*, GITLAB_*, CI_*, WANDB_API_KEY (local runs are
offline or disabled; `mlops collect` syncs from the machine holding the key). The run directory is
then read back like a collected one (mlops.results.read: written by student code, so validated),
and the run ends with the same table and plot as `mlops collect`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TextIO

from . import params, rundir, runenv, runid, settings, stages
from .errors import BadInput, WorkFailed
from .results import outdir, read, reports, table
from .results.plot import plot
from .results.reader import file_tail
from .results.text import printable

PREVIEW_LINES = 5  # of a failed stage's or configuration's log on the console (the reports keep more)
# What the research code may see of this process's environment (by name); everything else is dropped.
_PROCESS = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "TEMP", "TMP")
_LOCALE = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ")
_NETWORK = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
_CA = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT")
_PYTHON = ("PYTHONPATH", "PYTHONHASHSEED", "PYTHONUTF8", "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS", "VIRTUAL_ENV")
_COMPUTE = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_CACHES = ("XDG_CACHE_HOME", "HF_HOME", "TORCH_HOME", "MPLBACKEND", "MPLCONFIGDIR")
_WANDB = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_SILENT")  # never the API key
PASSED = _PROCESS + _LOCALE + _NETWORK + _CA + _PYTHON + _COMPUTE + _CACHES + _WANDB


def child_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of `environ` (default os.environ) that research code may inherit."""
    source: Mapping[str, str] = os.environ if environ is None else environ
    return {k: source[k] for k in PASSED if k in source}


class StageFailed(WorkFailed):
    """A stage of the local run failed (exit 1)."""


def _stage_env(cfg: settings.Settings, run: Path, run_id: str) -> dict[str, str]:
    """The research code's environment: the allow-listed part of ours plus the stage contract (runenv)."""
    env = child_env()
    env.update(runenv.stage_env(cfg, run_id, str(run)))
    env["WANDB_SILENT"] = "true"
    return env


def _run_stage(cfg, name: str, env: dict, log: Path) -> None:
    stage = stages.BY_NAME[name]
    argv = stages.entrypoint(cfg.root, stage)
    with log.open("wb") as fh:
        rc = subprocess.run(
            argv, check=False, cwd=cfg.root / name, env=env, stdout=fh, stderr=subprocess.STDOUT
        ).returncode
    if rc != 0:
        raise StageFailed(f"{name} stage failed (exit {rc}); log {log}:\n{_preview(cfg, log)}")


def _preview(cfg: settings.Settings, log: Path) -> str:
    """The end of a log research code wrote, for the console: bounded, printable, never through a link."""
    return file_tail(log, cfg.collect.log_tail_bytes, PREVIEW_LINES, width=200)


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
        rc = subprocess.run(
            argv, check=False, cwd=cfg.root / "model", env=env, stdout=fh, stderr=subprocess.STDOUT
        ).returncode
    has_metrics = os.path.isfile(result_dir / "metrics.json") and not os.path.islink(result_dir / "metrics.json")
    state = {
        "status": "completed" if rc == 0 and has_metrics else "failed",
        "exit_code": rc,
        "started": started,
        "duration_s": round(time.time() - started, 3),
    }
    rundir.write_task_state(run, cid, state)
    return {**state, "config_id": cid}


def run_local(
    root: Path | None = None, jobs: int = 1, run_id: str | None = None, out: TextIO = sys.stderr
) -> tuple[Path, int]:
    """Run the whole sweep; returns (run dir, number of failed configurations)."""
    cfg = settings.load(root)
    params.validate(cfg.root / "params" / "parameters.json")  # fail before creating anything
    run_id = runid.check(run_id, "--run-id") if run_id else runid.new()
    run = rundir.create(
        cfg.root / "runs",
        run_id,
        {
            "mode": "local",
            "commit": rundir.git_commit(cfg.root),
            "pipeline": None,
            "parameters_sha256": params.file_sha256(cfg.root / "params" / "parameters.json"),
        },
    )
    env = _stage_env(cfg, run, run_id)
    print(f"run {run_id}: {run}", file=out)
    for name in ("params", "data"):
        t0 = time.time()
        _run_stage(cfg, name, env, run / "state" / f"{name}.log")
        print(f"  {name:<6} done in {time.time() - t0:.1f}s", file=out)
    with read.RunReader(run) as reader:  # written by the params stage: research code, so validated
        index, index_problems = read.index(reader)
    for problem in index_problems:
        print(f"  {printable(problem, 300)}", file=out)
    if not index:
        raise StageFailed(
            "the params stage wrote no usable envs/index.json: "
            + "; ".join(printable(p, 200) for p in index_problems[:3])
        )
    total, failed = len(index), 0
    print(f"  model  {total} configurations, {jobs} at a time", file=out)
    caps = cfg.collect
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_train_one, cfg, run, entry, env) for entry in index]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            cid, ok = result["config_id"], result["status"] == "completed"
            failed += not ok
            line = f"  [{done:>{len(str(total))}}/{total}] {'ok  ' if ok else 'FAIL'} {cid} {result['duration_s']:.1f}s"
            if not ok:
                line += f" (exit {result['exit_code']}), log: {run / 'results' / cid / 'log'}"
                line += "".join(f"\n        | {x}" for x in _preview(cfg, run / "results" / cid / "log").splitlines())
            print(line, file=out, flush=True)
    rows, problems = read.run_rows(run, caps)
    bad = sum(r["status"] != "completed" or bool(r["problems"]) for r in rows) + len(problems)
    files = {"summary.json": reports.summary_json(rows, run_id, problems), "summary.csv": reports.summary_csv(rows)}
    try:
        files["sweep.png"] = plot(rows)
    except Exception as exc:  # noqa: BLE001 (a plot must never cost the summary; no matplotlib: pip install .[report])
        print(f"  sweep.png not drawn ({type(exc).__name__}: {printable(exc, 100)})", file=out)
    where = run / "results"
    try:
        outdir.write_all(where, files, cfg.root)
    except (OSError, BadInput):  # the research code replaced results/ by something else: write beside it
        where = run
        outdir.write_all(where, files, cfg.root)
    print(f"  {len(rows) - bad}/{total} completed", file=out)
    print(
        table.table(
            rows, problems, str(where / "sweep.png") if "sweep.png" in files else None, str(where / "summary.csv")
        ),
        end="",
        file=out,
    )
    return run, max(failed, bad)
