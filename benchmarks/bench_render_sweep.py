"""Render time with hooks, and the local sweep with --jobs 1 vs --jobs 2.

    python benchmarks/bench_render_sweep.py [--renders 5] [--smoke]

Prints a table and the ratio; not a test (nothing is asserted). --smoke: one render, no sweep.
"""
import argparse
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
    args = ap.parse_args()
    print(f"machine: {describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        renders = []
        for i in range(1 if args.smoke else args.renders):
            renders.append(timed(["cookiecutter", "--no-input", str(TEMPLATE), "-o", str(tmp / f"r{i}")]))
        print(f"render (cookiecutter --no-input, hooks included): median {statistics.median(renders):.2f}s "
              f"over {len(renders)} renders (min {min(renders):.2f}s, max {max(renders):.2f}s)")
        if args.smoke:
            return
        project = tmp / "r0" / "forecasting-experiments"
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(project / ".venv")], check=True)
        subprocess.run([str(project / ".venv/bin/pip"), "install", "-q", "--no-deps", "--no-build-isolation",
                        "-e", str(project)], check=True)
        mlops = str(project / ".venv/bin/mlops")
        n = subprocess.run([mlops, "params", "validate"], cwd=project, capture_output=True, text=True).stdout
        times = {}
        for jobs in (1, 2):
            times[jobs] = timed([mlops, "run", "--local", "--jobs", str(jobs), "--run-id", f"bench-j{jobs}"], cwd=project)
        print(f"local sweep ({n.strip().split('ok, ')[1]}): --jobs 1 {times[1]:.1f}s, --jobs 2 {times[2]:.1f}s, "
              f"speed-up {times[1] / times[2]:.2f}x (ideal on 2 cores: 2.00x)")


if __name__ == "__main__":
    main()
