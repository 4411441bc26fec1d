"""Scale: a 5,000-configuration sweep through the real code paths of the mlops package.

    python benchmarks/bench_scale.py [--configs 5000] [--max-array-size 1001] [--smoke]

Measured, each step in a fresh Python process (so peak RSS belongs to that step alone):
  validate   mlops.params.validate: JSON load, JSON Schema 2020-12, semantic rules, size cap
  expand     mlops.params.expand: the configurations and their config ids
  write_envs mlops.params.write_envs: one 0600 env file per configuration + index.json
  plan       mlops.cluster.sbatch.batch_scripts: the batch scripts of the model stage (one sbatch
             call each in shell/submit_slurm.sh; goal: ceil(N / MaxArraySize))
  collect    mlops.cluster.runs.collect_run over N result directories (metrics.json, log, task state each,
             written by this script; 1 % of them failed). It runs the real collect: the state read
             and merge (mlops.cluster.state.status), the tar.gz stream of the run directory and its
             checked extraction (results.fetch + results.extract), the validated reading (results.read),
             summary.json/.csv, junit.xml, metrics.txt and sweep.png.
             The one thing left out is SSH: the "cluster" commands run through a local shell
             (LocalShell below: the run()/write_file() of mlops.remote.Remote), so
             login and network transfer time are not included; the bytes of the stream are printed.
Peak memory is ru_maxrss of the step's process; "baseline" is the same process after its imports,
before the step. Goals (issue #7): expand < 2 s, collect < 30 s, sbatch calls = ceil(N / MaxArraySize).
Not a test: nothing is asserted here; --smoke runs 200 configurations (tests/{project,e2e}/test_benchmarks_*_smoke.py).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent
PROJECT_TEMPLATE = TEMPLATE / "{{cookiecutter.project_slug}}"
# src/mlops/*.py and params/parameters.schema.json are copied verbatim by cookiecutter
# (_copy_without_render), so the template's own files are the rendered project's files.
sys.path.insert(0, str(PROJECT_TEMPLATE / "src"))
sys.path.insert(0, str(HERE))
SCHEMA = PROJECT_TEMPLATE / "params" / "parameters.schema.json"
SLUG = "bench-scale"
RUN_ID = "p5000"


def parameters(n: int) -> dict:
    """A grid of exactly n configurations (n = a * b), the shape a real large sweep has."""
    a = next(d for d in range(int(math.isqrt(n)), 0, -1) if n % d == 0)
    return {
        "fixed": {"horizon": 24, "test_fraction": 0.2},
        "grid": {"window": list(range(1, a + 1)), "seed": list(range(n // a))},
        "max_configurations": max(10_000, n),
    }


# ------------------------------------------------------------------ the "cluster" side, without SSH


class LocalShell:
    """mlops.remote.Remote's run()/write_file() on this machine: the commands collect sends to the
    login node run for real in a local bash, only the SSH hop is missing."""

    def run(self, command, stdin: bytes | None = None, timeout: float = 600, check: bool = True, stdout=None):
        argv = command if isinstance(command, list) else ["bash", "-c", command]
        with tempfile.TemporaryFile() as err_file:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err_file)
            proc.stdin.write(stdin or b"")
            proc.stdin.close()
            data = bytearray()
            while chunk := proc.stdout.read(1 << 16):  # streamed like the SSH channel: stdout may be any writer
                stdout.write(chunk) if stdout is not None else data.extend(chunk)
            rc = proc.wait(timeout)
            err_file.seek(0)
            err = err_file.read().decode(errors="replace")
        if check and rc != 0:
            raise RuntimeError(f"{command!r} failed: {err[-2000:]}")
        return rc, data.decode(errors="replace"), err

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        Path(path).write_bytes(data)
        Path(path).chmod(mode)


def make_cluster_run(workdir: Path, n: int) -> Path:
    """A finished run of n configurations as the cluster holds it: envs from the real write_envs,
    one metrics.json + log + task state per configuration (1 % failed), jobs.json of the submission."""
    from mlops import params, rundir

    run = workdir / SLUG / "runs" / RUN_ID
    rundir.create(run.parent, RUN_ID, {"mode": "slurm", "commit": "0" * 40, "configurations": n})
    configs = params.expand(params.validate(write_params(workdir, n), SCHEMA))
    params.write_envs(configs, run / "envs", "/project", {"RUN_ID": RUN_ID})
    rng = random.Random(7)
    now = time.time()
    for i, c in enumerate(configs):
        res = run / "results" / c.config_id
        res.mkdir()
        failed = i % 100 == 99
        if failed:
            (res / "log").write_text("".join(f"epoch {e}: loss nan\n" for e in range(40)) + "RuntimeError: diverged\n")
        else:
            mae = rng.uniform(0.5, 2.0)
            (res / "metrics.json").write_text(
                json.dumps(
                    {
                        "mae": mae,
                        "rmse": mae * 1.3,
                        "mase": mae / 1.1,
                        "train_seconds": 2.0,
                        "n_train": 800,
                        "n_test": 200,
                    },
                    indent=1,
                )
                + "\n"
            )
            (res / "log").write_text(json.dumps({"mae": mae}) + "\n")
        rundir.write_task_state(
            run,
            c.config_id,
            {
                "status": "failed" if failed else "completed",
                "exit_code": 1 if failed else 0,
                "started": now,
                "duration_s": 2.0,
                "attempt": 1,
                "job": f"1000_{i}",
            },
        )
    attempt = {
        "attempt": 1,
        "kind": "none",
        "indices": list(range(n)),
        "submitted": now,
        "config_ids": [c.config_id for c in configs],
        "model": [{"job": None, "offset": 0, "indices": list(range(n))}],
    }
    (run / "state" / "jobs.json").write_text(json.dumps([attempt]))
    return run


def bench_settings(root: Path, workdir: Path):
    """Settings of a rendered project named SLUG (scheduler none) whose cluster workdir is `workdir`."""
    import tomllib

    from mlops import options, settings

    answers = {o.name: (o.choices[0] if o.choices else o.default) for o in options.OPTIONS}
    answers.update(project_name=SLUG, scheduler="none")
    for name in options.DERIVED_FROM:  # in answer order
        answers[name] = options.derived(name, answers)
    answers["hpc_workdir"] = str(workdir)
    text = settings.fill_toml((PROJECT_TEMPLATE / "mlops.toml").read_text(), answers)
    return settings.from_data(tomllib.loads(text), root)


def write_params(where: Path, n: int) -> Path:
    path = where / "parameters.json"
    if not path.exists():
        path.write_text(json.dumps(parameters(n), indent=1))
    return path


# ------------------------------------------------------------------ one step per child process


def time_parts() -> dict:
    """Wrap the functions collect.collect calls (the real ones run) to say where its time goes."""
    from mlops.cluster import state as cluster_state
    from mlops.results import collect, extract, fetch, read, reports, wandb_sync

    spent: dict[str, float] = {}

    def timed(module, name):
        real = getattr(module, name)

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0

        setattr(module, name, wrapper)

    timed(cluster_state, "status")
    timed(fetch, "download")
    timed(extract, "extract")
    timed(read, "run_rows")
    for name in ("junit", "summary_csv", "summary_json"):
        timed(reports, name)
    timed(collect, "plot")
    timed(wandb_sync, "sync")
    return spent


def step(name: str, work: Path, n: int, max_array: int) -> dict:
    """Runs in a child process: import, note the baseline RSS, time the step, report peak RSS."""
    import matplotlib  # collect.plot imports it lazily; count the import in the baseline, not the step

    from mlops import params  # noqa: F401  (imports before the baseline)
    from mlops.cluster import runs, sbatch, state  # noqa: F401

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

    params_file = write_params(work, n)
    extra: dict = {}
    if name == "collect":
        make_cluster_run(work / "cluster", n)  # the inputs are written before the clock starts
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if name == "validate":
        params.validate(params_file, SCHEMA)
    elif name == "expand":
        doc = params.validate(params_file, SCHEMA)
        t0 = time.perf_counter()
        extra["configurations"] = len(params.expand(doc))
    elif name == "validate+expand":
        extra["configurations"] = len(params.expand(params.validate(params_file, SCHEMA)))
    elif name == "write_envs":
        configs = params.expand(params.validate(params_file, SCHEMA))
        t0 = time.perf_counter()
        params.write_envs(configs, work / "run" / "envs", "/project", {"RUN_ID": RUN_ID})
        extra["files"] = len(os.listdir(work / "run" / "envs"))
    elif name == "plan":
        cfg = bench_settings(work, work / "cluster")
        files, chunks = sbatch.batch_scripts(cfg, "/cluster/run", RUN_ID, list(range(n)), max_array, 1, True, None)
        model_files = [f for f in files if f.startswith("model-")]  # submit_slurm.sh: one sbatch per file
        extra.update(
            model_sbatch_calls=len(model_files),
            arrays=len(chunks),
            largest_task_id=max(max(c["indices"]) - c["offset"] for c in chunks),
            all_sbatch_calls=len(files),
        )
    elif name == "collect":
        cfg = bench_settings(work, work / "cluster")
        out = work / "artifacts"
        parts = time_parts()
        t0 = time.perf_counter()
        result = runs.collect_run(LocalShell(), cfg, RUN_ID, out, out=io.StringIO())
        extra.update(
            rows=len(result["rows"]),
            stream_bytes=result["bytes"],
            counts={k: v for k, v in result["counts"].items() if v},
            outputs=sorted(p.name for p in result["run"].iterdir() if p.is_file()),
            parts_s={k: round(v, 3) for k, v in parts.items()},
        )
    else:
        raise SystemExit(f"unknown step {name}")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"step": name, "seconds": seconds, "peak_rss_mb": peak / 1024, "baseline_rss_mb": baseline / 1024, **extra}


def run_step(name: str, n: int, max_array: int, tmp: Path) -> dict:
    work = tmp / name
    work.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            name,
            "--configs",
            str(n),
            "--max-array-size",
            str(max_array),
            "--work",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        return {"step": name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1], "stderr": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_text() -> str:
    try:
        return "load average " + " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "load unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=5000)
    ap.add_argument("--max-array-size", type=int, default=1001, help="SLURM's MaxArraySize (its default: 1001)")
    ap.add_argument("--smoke", action="store_true", help="200 configurations, for CI")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(step(args.child, args.work, args.configs, args.max_array_size)))
        return 0
    from _machine import describe

    n = 200 if args.smoke else args.configs
    print(f"machine: {describe()}; {load_text()} at start")
    print(f"scale benchmark: {n:,} configurations, MaxArraySize {args.max_array_size}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="mlops-bench-scale-") as tmp:
        for name in ("validate", "expand", "validate+expand", "write_envs", "plan", "collect"):
            r = run_step(name, n, args.max_array_size, Path(tmp))
            results[name] = r
            if "error" in r:
                print(f"  {name:<16} FAILED: {r['error']}\n{r['stderr']}")
                continue
            detail = {k: v for k, v in r.items() if k not in ("step", "seconds", "peak_rss_mb", "baseline_rss_mb")}
            print(
                f"  {name:<16} {r['seconds']:8.3f} s   peak RSS {r['peak_rss_mb']:6.0f} MB "
                f"(baseline {r['baseline_rss_mb']:.0f} MB)   {json.dumps(detail) if detail else ''}"
            )
    goal_calls = math.ceil(n / args.max_array_size)
    print("goals:")
    failed = [k for k, r in results.items() if "error" in r]
    if "validate+expand" in results and "error" not in results["validate+expand"]:
        t = results["validate+expand"]["seconds"]
        print(f"  validate+expand {t:.3f} s (goal < 2 s): {'met' if t < 2 else 'NOT met'}")
    if "plan" in results and "error" not in results["plan"]:
        calls = results["plan"]["model_sbatch_calls"]
        print(
            f"  model-stage sbatch calls {calls} (goal ceil({n} / {args.max_array_size}) = {goal_calls}): "
            f"{'met' if calls == goal_calls else 'NOT met'}"
        )
    if "collect" in results and "error" not in results["collect"]:
        t = results["collect"]["seconds"]
        print(f"  collect {t:.2f} s (goal < 30 s, SSH excluded): {'met' if t < 30 else 'NOT met'}")
    print(f"{load_text()} at end")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "configurations": n,
                    "max_array_size": args.max_array_size,
                    "goal_sbatch_calls": goal_calls,
                    "steps": results,
                },
                indent=1,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
