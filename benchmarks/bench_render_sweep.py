"""Render time with hooks, the local sweep with --jobs 1 vs --jobs 2, the rendered project's test suite.

    python benchmarks/bench_render_sweep.py [--renders 5] [--smoke] [--json FILE]

Prints a table and the ratio; not a test (nothing is asserted). --smoke: one render, no sweep.
The project test suite is `python -m pytest -q` inside a rendered default project (its own tests).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402

TEMPLATE = Path(__file__).resolve().parents[1]


def timed(argv, **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, **kw)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--renders", type=int, default=5)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    figures = {}
    print(f"machine: {describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        renders = []
        for i in range(1 if args.smoke else args.renders):
            renders.append(timed(["cookiecutter", "--no-input", str(TEMPLATE), "-o", str(tmp / f"r{i}")]))
        print(
            f"render (cookiecutter --no-input, hooks included): median {statistics.median(renders):.2f}s "
            f"over {len(renders)} renders (min {min(renders):.2f}s, max {max(renders):.2f}s)"
        )
        figures["render_s"] = statistics.median(renders)
        if args.smoke:
            if args.json:
                args.json.write_text(json.dumps(figures, indent=1))
            return
        project = tmp / "r0" / "forecasting-experiments"
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(project / ".venv")], check=True)
        subprocess.run(
            [str(project / ".venv/bin/pip"), "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(project)],
            check=True,
        )
        mlops = str(project / ".venv/bin/mlops")
        n = subprocess.run([mlops, "params", "validate"], cwd=project, capture_output=True, text=True).stdout
        times = {}
        for jobs in (1, 2):
            times[jobs] = timed(
                [mlops, "run", "--local", "--jobs", str(jobs), "--run-id", f"bench-j{jobs}"], cwd=project
            )
        print(
            f"local sweep ({n.strip().split('ok, ')[1]}): --jobs 1 {times[1]:.1f}s, --jobs 2 {times[2]:.1f}s, "
            f"speed-up {times[1] / times[2]:.2f}x (ideal on 2 cores: 2.00x)"
        )
        suite = timed([str(project / ".venv/bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project)
        print(f"rendered project's test suite (pytest -q): {suite:.1f}s")
        figures.update(
            sweep_jobs1_s=times[1],
            sweep_jobs2_s=times[2],
            configurations=n.strip().split("ok, ")[1],
            project_suite_s=suite,
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
