"""Run every benchmark and print one Markdown results table (with date, machine and load).

    python benchmarks/bench_all.py [--smoke] [--skip-cluster] [--write-readme]

Each benchmark runs in its own process, prints its own figures (shown as they come) and hands them
over as JSON. --write-readme puts the table into README.md between the benchmarks:begin/end
markers of the benchmarks section. The cluster benchmarks (redeploy, throughput) start sshd, SLURM
and a cluster user: they need root; --skip-cluster leaves them out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe  # noqa: E402

README = HERE.parent / "README.md"
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"
BENCHES = ("render_sweep", "scale", "redeploy", "throughput")
CLUSTER = ("redeploy", "throughput")


def loadavg() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def run(name: str, smoke: bool, tmp: Path) -> dict | None:
    out = tmp / f"{name}.json"
    argv = [sys.executable, str(HERE / f"bench_{name}.py"), "--json", str(out)] + (["--smoke"] if smoke else [])
    print(f"\n=== {' '.join(argv[1:])}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(argv).returncode
    print(f"=== bench_{name}: exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
    return json.loads(out.read_text()) if out.exists() else None


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n else "0 B"


def table(r: dict, smoke: bool) -> list[str]:
    rows = []

    def add(area, figure, value, goal="", met=None):
        rows.append(f"| {area} | {figure} | {value} | {goal} | {'' if met is None else ('yes' if met else '**no**')} |")

    if rs := r.get("render_sweep"):
        add("render", "`cookiecutter --no-input` (hooks included), median", f"{rs['render_s']:.2f} s")
        if "project_suite_s" in rs:
            add("render", "rendered project's own test suite (`pytest -q`)", f"{rs['project_suite_s']:.1f} s")
            add(
                "render",
                f"`mlops run --local` ({rs['configurations']}): --jobs 1 / --jobs 2",
                f"{rs['sweep_jobs1_s']:.1f} s / {rs['sweep_jobs2_s']:.1f} s "
                f"({rs['sweep_jobs1_s'] / rs['sweep_jobs2_s']:.2f}x)",
            )
    if sc := r.get("scale"):
        n, st = sc["configurations"], sc["steps"]
        if "error" not in st.get("validate+expand", {"error": 1}):
            ve = st["validate+expand"]
            add(
                "scale",
                f"validate + expand {n:,} configurations",
                f"{ve['seconds']:.2f} s, peak RSS {ve['peak_rss_mb']:.0f} MB",
                "< 2 s",
                ve["seconds"] < 2,
            )
        if "error" not in st.get("write_envs", {"error": 1}):
            add("scale", f"write {n:,} env files + index.json", f"{st['write_envs']['seconds']:.2f} s")
        if "error" not in st.get("plan", {"error": 1}):
            calls = st["plan"]["model_sbatch_calls"]
            add(
                "scale",
                f"sbatch calls for the model stage (MaxArraySize {sc['max_array_size']})",
                str(calls),
                f"ceil({n}/{sc['max_array_size']}) = {sc['goal_sbatch_calls']}",
                calls == sc["goal_sbatch_calls"],
            )
        c = st.get("collect", {})
        if "error" in c:
            add("scale", f"`mlops collect` of {n:,} result dirs", f"failed: {c['error']}", "< 30 s", False)
        elif c:
            plot = c.get("parts_s", {}).get("plot")
            add(
                "scale",
                f"`mlops collect` of {n:,} result dirs (SSH excluded)",
                f"{c['seconds']:.1f} s, peak RSS {c['peak_rss_mb']:.0f} MB"
                + (f" (sweep.png: {plot:.1f} s)" if plot is not None else ""),
                "< 30 s",
                c["seconds"] < 30,
            )
    if rd := r.get("redeploy"):
        for d in rd["deploys"]:
            goal, met = {"unchanged": ("0 B", d["bytes"] == 0), "code-only": ("<= 1 MB", d["bytes"] <= 1_000_000)}.get(
                d["scenario"], ("", None)
            )
            add(
                "redeploy",
                f"`mlops deploy`, {d['scenario']}",
                f"{d['seconds']:.1f} s, {mb(d['bytes'])} uploaded",
                goal,
                met,
            )
    if tp := r.get("throughput"):
        n, k, t = tp["configurations"], tp["slots"], tp["entry_point_s"]
        bare, sub, ours = tp["bare_array_s"], tp["submitit_s"], tp["mlops_model_stage_s"]
        area = f"sweep {n}x{tp['seconds']:g}s, {k} slots" + (
            f" (median of {tp['repetitions']})" if tp.get("repetitions", 1) > 1 else ""
        )
        add(area, f"ideal ceil({n}/{k}) x {t:.2f} s", f"{tp['ideal_s']:.1f} s")
        add(area, f"bare `sbatch --array=0-{n - 1}%{k}`", f"{bare:.1f} s ({bare / tp['ideal_s']:.2f}x ideal)")
        add(area, "submitit `map_array`", f"{sub:.1f} s ({sub / tp['ideal_s']:.2f}x ideal)")
        add(
            area,
            "`mlops submit`, model stage (containers)",
            f"{ours:.1f} s ({ours / bare:.2f}x bare, {ours / sub:.2f}x submitit)",
            "<= 1.10x bare, <= 1x submitit",
            ours <= 1.10 * bare and ours <= sub,
        )
        add(area, "`mlops submit`, end to end (login, params + data jobs)", f"{tp['mlops_end_to_end_s']:.1f} s")
        add(area, "container start (podman run - direct, median)", f"{tp['container']['container_start_s']:.2f} s")
    return rows


def write_readme(block: str) -> None:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} markers in its benchmarks section")
    head, rest = text.split(BEGIN, 1)
    README.write_text(head + BEGIN + "\n" + block + "\n" + END + rest.split(END, 1)[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="each benchmark's quick mode")
    ap.add_argument("--skip-cluster", action="store_true", help="leave out redeploy and throughput (they need root)")
    ap.add_argument("--write-readme", action="store_true", help="put the table into README.md")
    args = ap.parse_args()
    machine, load_start = describe(), loadavg()
    results = {}
    with tempfile.TemporaryDirectory(prefix="mlops-bench-all-") as tmp:
        for name in BENCHES:
            if name in CLUSTER and (args.skip_cluster or os.geteuid() != 0):
                print(f"\n=== bench_{name}: skipped ({'--skip-cluster' if args.skip_cluster else 'needs root'})")
                continue
            results[name] = run(name, args.smoke, Path(tmp))
    lines = [
        f"Measured {machine}; load average {load_start} at start, {loadavg()} at end"
        + (" (smoke mode: small sizes, not the figures of the issue)" if args.smoke else "")
        + ".",
        "",
        "| area | figure | value | goal | met |",
        "|---|---|---|---|---|",
        *table(results, args.smoke),
    ]
    block = "\n".join(lines)
    print("\n" + block)
    if args.write_readme:
        write_readme(block)
        print(f"\nwritten into {README}")
    missing = [n for n in results if results[n] is None]
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
