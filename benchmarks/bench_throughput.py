"""Sweep throughput on the local single-node SLURM: `mlops submit` vs submitit vs a bare job array.

    python benchmarks/bench_throughput.py [--configs 32] [--seconds 2] [--slots 2] [--smoke]

One cluster (tests/support/infra: sshd with TOTP, SLURM 22.05, rootless podman), one run, four figures:
  mlops submit  the rendered project's `mlops submit` over SSH (login with key + one-time code):
                params job -> data job (afterok) -> model job array %slots, each task one rootless
                podman container (`podman run --rm ... --env-file <config>.env`) plus its state record.
                "model stage" = from the end of the data job (state/data.rc written) until the
                array's last task is final in SLURM; "end to end" = from starting `mlops submit`
                (login, run directory, three sbatch calls, params and data containers) to that moment.
  submitit      submitit.AutoExecutor.map_array (slurm_array_parallelism = slots), each task calls the
                SAME entry point (`python3 train.py` in model/, the same env file) with subprocess,
                no container. From map_array() to the last task final.
  bare array    `sbatch --array=0-N-1%slots` of a 6-line bash script that does the same (env file ->
                python3 train.py): the floor SLURM itself allows here. From sbatch to the last task final.
  ideal         ceil(N / slots) * t, t = the entry point's own run time measured directly (no SLURM).
The container start cost is measured separately: `podman run` of the model image (the argv mlops
runs, from mlops.images.runtime.run_argv) with WORK_SECONDS=0 minus the same entry point run directly,
both as the cluster user, median of 5.
The model (benchmarks/_bench_model.py) sleeps WORK_SECONDS: the figures measure orchestration.
Goals (issue #7): mlops no slower than submitit; within 1.10x of the bare array, containers included.
Not a test: nothing is asserted; --smoke: 4 configurations of 0.2 s (tests/{project,e2e}/test_benchmarks_*_smoke.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pwd
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "{{cookiecutter.project_slug}}" / "src"))

import _bench_model  # noqa: E402
from _cluster import build, load_text, local_cluster, mlops, project, wait_gone  # noqa: E402
from _machine import describe  # noqa: E402

INDEX_PY = 'import json,sys; print(json.load(open(sys.argv[1]))["configurations"][int(sys.argv[2])]["config_id"])'


def bare_script(run_dir: Path, out_dir: Path, model_dir: Path) -> str:
    """What one task of the bare array does: index -> config id -> env file -> the entry point."""
    return f"""#!/bin/bash
CID=$(python3 -c '{INDEX_PY}' {run_dir}/envs/index.json $SLURM_ARRAY_TASK_ID) || exit 3
set -a; . {run_dir}/envs/$CID.env; set +a
export PROJECT_DIR={out_dir} DATA_DIR={run_dir}/data RESULT_DIR={out_dir}/results/$CID
cd {model_dir} && exec python3 train.py
"""


def train_one(index: int, run_dir: str, out_dir: str, model_dir: str) -> str:
    """The submitit task: the same env file and the same entry point as the bare array (subprocess)."""
    import json as _json
    import os as _os
    import subprocess as _subprocess

    cid = _json.load(open(f"{run_dir}/envs/index.json"))["configurations"][index]["config_id"]
    env = dict(_os.environ)
    env.update(line.split("=", 1) for line in open(f"{run_dir}/envs/{cid}.env").read().splitlines() if line)
    env.update(PROJECT_DIR=out_dir, DATA_DIR=f"{run_dir}/data", RESULT_DIR=f"{out_dir}/results/{cid}")
    _subprocess.run(["python3", "train.py"], cwd=model_dir, env=env, check=True)
    return cid


def count_metrics(out_dir: Path) -> int:
    return len(list(out_dir.glob("results/*/metrics.json")))


def median_time(argv_fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        argv_fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def container_cost(cluster: dict, proj: Path, manifest: dict, seconds: float, reps: int) -> dict:
    """podman run of the model image (mlops's own argv) vs the entry point directly, as the cluster user."""
    from mlops import settings
    from mlops.images import runtime

    podman = cluster["podman"]
    scratch = cluster["workdir"] / "container-cost"
    (scratch / "results" / "x").mkdir(parents=True)
    (scratch / "data").mkdir()
    env_file = scratch / "bench.env"
    env_file.write_text(f"WORK_SECONDS={seconds}\nSEED=0\nPROJECT_DIR=/project\nRESULT_DIR=/project/results/x\n")
    user_dir = cluster["workdir"] / "model-copy"
    subprocess.run(["cp", "-r", str(proj / "model"), str(user_dir)], check=True)
    subprocess.run(["chown", "-R", f"{cluster['server'].user}:", str(scratch), str(user_dir)], check=True)
    cfg = settings.load(proj)
    image = runtime.Image(
        "model", manifest["images"]["model"]["digest"], f"{cfg.cluster_root}/images", cfg.project.slug, "podman"
    )
    # the model's argv as task.sh runs it: its placeholders filled (env file, config id, the user's ids)
    user = pwd.getpwnam(cluster["server"].user)
    argv = runtime.fill(
        runtime.run_argv(image, str(scratch), config_id="x"), str(env_file), "x", user.pw_uid, user.pw_gid
    )
    container = median_time(lambda: podman.run(argv, timeout=300), reps)
    direct = median_time(
        lambda: podman.run(
            ["bash", "-c", f"cd {user_dir} && exec python3 train.py"],
            timeout=300,
            env={"WORK_SECONDS": str(seconds), "SEED": "0", "RESULT_DIR": str(scratch / "results" / "y")},
        ),
        reps,
    )
    return {"podman_run_s": container, "direct_s": direct, "container_start_s": container - direct}


def run_mlops(cluster: dict, proj: Path, run_id: str, n: int) -> dict:
    t0 = time.time()
    _, submit_s = mlops(proj, cluster, "submit", "--run-id", run_id)
    run_dir = cluster["workdir"] / proj.name / "runs" / run_id
    jobs = json.loads((run_dir / "state" / "jobs.json").read_text())[0]
    ids = [jobs["params"], jobs["data"], *(m["job"] for m in jobs["model"])]
    end = wait_gone(cluster["slurm"], [str(i) for i in ids], timeout=60 + 30 * n)
    records = [json.loads(p.read_text()) for p in (run_dir / "state" / "tasks").glob("*.json")]
    eligible = (run_dir / "state" / "data.rc").stat().st_mtime
    # duration_s: the task wrapper's own clock around `podman run` (container start and stop included)
    return {
        "end_to_end_s": end - t0,
        "model_stage_s": end - eligible,
        "submit_command_s": submit_s,
        "task_s": statistics.mean(r.get("duration_s", 0) for r in records) if records else 0.0,
        "completed": sum(r["status"] == "completed" for r in records),
        "run_dir": run_dir,
    }


def run_bare(cluster: dict, run_dir: Path, model_dir: Path, n: int, slots: int, rep: int) -> dict:
    out = cluster["work"] / f"bare-{rep}"
    (out / "logs").mkdir(parents=True)
    script = out / "task.sh"
    script.write_text(bare_script(run_dir, out, model_dir))
    t0 = time.time()
    proc = cluster["slurm"].run(
        [
            "sbatch",
            "--parsable",
            f"--array=0-{n - 1}%{slots}",
            "--cpus-per-task=1",
            "--mem=300M",
            f"--output={out}/logs/%A_%a.out",
            str(script),
        ]
    )
    job = proc.stdout.strip().split(";")[0]
    end = wait_gone(cluster["slurm"], [job], timeout=60 + 30 * n)
    return {"wall_s": end - t0, "completed": count_metrics(out)}


def run_submitit(cluster: dict, run_dir: Path, model_dir: Path, n: int, slots: int, rep: int) -> dict:
    import submitit

    out = cluster["work"] / f"submitit-{rep}"
    out.mkdir()
    os.environ["SLURM_CONF"] = str(cluster["slurm"].conf_path)  # submitit calls sbatch from this process
    executor = submitit.AutoExecutor(folder=str(out / "jobs"), cluster="slurm")
    executor.update_parameters(
        slurm_array_parallelism=slots,
        cpus_per_task=1,
        slurm_mem="300M",
        timeout_min=30,
        slurm_partition=cluster["slurm"].partition,
    )
    t0 = time.time()
    jobs = executor.map_array(train_one, list(range(n)), [str(run_dir)] * n, [str(out)] * n, [str(model_dir)] * n)
    array = jobs[0].job_id.split("_")[0]
    end = wait_gone(cluster["slurm"], [array], timeout=60 + 30 * n)
    return {"wall_s": end - t0, "completed": count_metrics(out)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=2.0, help="work per configuration")
    ap.add_argument("--slots", type=int, default=2, help="tasks at once (%%K; the node has this many CPUs)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repetitions; medians are reported")
    ap.add_argument("--smoke", action="store_true", help="4 configurations of 0.2 s, once, for CI")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    n, seconds = (4, 0.2) if args.smoke else (args.configs, args.seconds)
    print(f"machine: {describe()}; {load_text()} at start")
    print(f"throughput benchmark: {n} configurations of {seconds:g} s, {args.slots} at a time")
    with local_cluster() as cluster:
        proj = project(
            cluster, _bench_model.parameters(n, seconds), parallel=args.slots, model_files=_bench_model.FILES
        )
        manifest, build_s = build(proj, cluster)
        _, deploy_s = mlops(proj, cluster, "deploy")
        print(f"  setup: build {build_s:.1f} s, deploy {deploy_s:.1f} s (see bench_redeploy.py for deploy figures)")
        cost = container_cost(cluster, proj, manifest, 0.0, reps=3 if args.smoke else 5)
        # t: the entry point itself, run directly as the cluster user (python start + work + metrics)
        t = cost["direct_s"] + seconds
        model_dir = cluster["workdir"] / "model-copy"
        reps = {"mlops": [], "bare": [], "submitit": []}
        for rep in range(1 if args.smoke else args.repeat):
            # interleaved, so that a change of the machine's load hits every contender alike
            reps["mlops"].append(run_mlops(cluster, proj, f"bench-throughput-{rep}", n))
            run_dir = reps["mlops"][0]["run_dir"]  # bare and submitit read the same env files and data
            reps["bare"].append(run_bare(cluster, run_dir, model_dir, n, args.slots, rep))
            reps["submitit"].append(run_submitit(cluster, run_dir, model_dir, n, args.slots, rep))
            print(
                f"  repetition {rep + 1}: mlops model stage {reps['mlops'][-1]['model_stage_s']:.1f} s, "
                f"bare {reps['bare'][-1]['wall_s']:.1f} s, submitit {reps['submitit'][-1]['wall_s']:.1f} s",
                flush=True,
            )
        ideal = math.ceil(n / args.slots) * t
    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    ours = {k: med(reps["mlops"], k) for k in ("model_stage_s", "end_to_end_s", "submit_command_s", "task_s")}
    ours["completed"] = min(r["completed"] for r in reps["mlops"])
    bare = {"wall_s": med(reps["bare"], "wall_s"), "completed": min(r["completed"] for r in reps["bare"])}
    sub = {"wall_s": med(reps["submitit"], "wall_s"), "completed": min(r["completed"] for r in reps["submitit"])}
    figures = {
        "configurations": n,
        "seconds": seconds,
        "slots": args.slots,
        "entry_point_s": t,
        "ideal_s": ideal,
        "container": cost,
        "mlops_model_stage_s": ours["model_stage_s"],
        "mlops_end_to_end_s": ours["end_to_end_s"],
        "mlops_submit_command_s": ours["submit_command_s"],
        "mlops_task_s": ours["task_s"],
        "submitit_s": sub["wall_s"],
        "bare_array_s": bare["wall_s"],
        "completed": {"mlops": ours["completed"], "submitit": sub["completed"], "bare": bare["completed"]},
        "repetitions": len(reps["mlops"]),
        "all": {k: [r.get("model_stage_s", r.get("wall_s")) for r in v] for k, v in reps.items()},
    }
    print(
        f"  entry point run directly: {t:.2f} s; container start (podman run - direct, median): "
        f"{cost['container_start_s']:.2f} s (podman run {cost['podman_run_s']:.2f} s, direct {cost['direct_s']:.2f} s)"
    )
    rows = [
        ("ideal ceil(N/slots)*t", ideal),
        ("bare sbatch --array", bare["wall_s"]),
        ("submitit", sub["wall_s"]),
        ("mlops submit, model stage", ours["model_stage_s"]),
        ("mlops submit, end to end", ours["end_to_end_s"]),
    ]
    print(f"  medians of {len(reps['mlops'])} interleaved repetition(s):")
    print(f"  {'contender':<28} {'wall s':>8} {'/ideal':>7} {'/bare':>7}  completed")
    done = {
        "bare sbatch --array": bare["completed"],
        "submitit": sub["completed"],
        "mlops submit, model stage": ours["completed"],
        "mlops submit, end to end": ours["completed"],
    }
    for name, wall in rows:
        print(f"  {name:<28} {wall:8.1f} {wall / ideal:7.2f} {wall / bare['wall_s']:7.2f}  {done.get(name, '')}")
    print(
        f"  (`mlops submit` itself, login included: {ours['submit_command_s']:.1f} s; one mlops model task as its "
        f"wrapper timed it, podman run included: {ours['task_s']:.2f} s mean, vs {t:.2f} s for the entry point "
        f"run directly)"
    )
    r_sub, r_bare = ours["model_stage_s"] / sub["wall_s"], ours["model_stage_s"] / bare["wall_s"]
    print("goals:")
    print(f"  mlops model stage / submitit = {r_sub:.2f} (goal <= 1.00): {'met' if r_sub <= 1.0 else 'NOT met'}")
    print(f"  mlops model stage / bare array = {r_bare:.2f} (goal <= 1.10): {'met' if r_bare <= 1.10 else 'NOT met'}")
    print(f"{load_text()} at end")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if all(v == n for v in figures["completed"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
