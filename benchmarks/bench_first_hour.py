"""A new student's first hour, step by step, in seconds: render, install as the README says, the
first local sweep, the project's own tests, a look at the results; and the demo script.

    python benchmarks/bench_first_hour.py [--template DIR] [--variant default|pytorch] [--demo]
                                          [--json FILE] [--keep DIR]

The README's commands are taken from the rendered README's "first hour" section and run as written,
in one bash, in a fresh venv (no system site packages). Not a test: nothing is compared with a goal.
--template: another checkout of the template (e.g. an older commit: `git worktree add /tmp/old 157e50c`)
to measure before/after with the same script.

Machine notes, printed with the figures: pip's cache (~/.cache/pip) is whatever this machine has
(run once to warm it, then measure); PIP_RETRIES=0 is set, because the PyTorch CPU index that the
pytorch variant names is not reachable here (pip would spend ~8 s of retries per package on it);
pip takes torch 2.13.0 (CPU) from a file on this machine's disk.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _machine import describe  # noqa: E402

from support.first_hour import first_hour_commands, run_commands  # noqa: E402

TEMPLATE = Path(__file__).resolve().parents[1]
VARIANTS = {"default": {}, "pytorch": {"ml_framework": "pytorch"}}


def clean_env(home: Path | None = None) -> dict:
    """This process's environment without a venv or path of ours leaking into the student's shell."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MLOPS_RENDER_MODE", "CI")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("WANDB_", "HPC_", "CI_"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if "/.venv/" not in p)
    env["PIP_RETRIES"] = "0"
    return env


def render(template: Path, out: Path, variant: dict) -> tuple[Path, float, str]:
    home = out / ".cookiecutter-home"
    home.mkdir(parents=True)
    (home / "config.yaml").write_text(f"cookiecutters_dir: {home / 't'}\nreplay_dir: {home / 'r'}\n")
    argv = ["cookiecutter", "--no-input", "--config-file", str(home / "config.yaml"), str(template), "-o", str(out)]
    argv += [f"{k}={v}" for k, v in variant.items()]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"render failed:\n{proc.stdout}\n{proc.stderr}")
    (project,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return project, seconds, proc.stdout + proc.stderr


def git_version(template: Path) -> str:
    proc = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=template, capture_output=True, text=True)
    return proc.stdout.strip()[:70] or "not a git checkout"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--template", type=Path, default=TEMPLATE)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="default")
    ap.add_argument("--demo", action="store_true", help="also time `bash scripts/demo.sh`")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep it (default: a temp dir)")
    args = ap.parse_args()
    template = args.template.resolve()
    print(f"machine: {describe()}")
    print(f"template: {template} ({git_version(template)}), variant: {args.variant}")
    print("pip cache: ~/.cache/pip as it is; PIP_RETRIES=0 (the PyTorch CPU index is unreachable here)")
    work = Path(tempfile.mkdtemp(prefix="first-hour-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    figures: dict = {"template": str(template), "version": git_version(template), "variant": args.variant}
    project, seconds, said = render(template, work / "render", VARIANTS[args.variant])
    rows = [("render: cookiecutter --no-input", seconds, f"ok, printed {len(said.splitlines())} lines")]
    figures["render_lines"] = said.splitlines()
    commands = first_hour_commands((project / "README.md").read_text())
    steps, output = run_commands(commands, project, clean_env(), log=work / "first-hour.log")
    for step in steps:
        rows.append((step.command, step.seconds, "ok" if step.returncode == 0 else f"FAILED (exit {step.returncode})"))
    for command in commands[len(steps) :]:
        rows.append((command, 0.0, "not run"))
    runs = sorted((project / "runs").glob("*/run.json")) if (project / "runs").is_dir() else []
    looked = {}
    if runs:
        run = runs[-1].parent
        looked = {
            "run.json commit": json.loads(runs[-1].read_text()).get("commit"),
            "sweep.png": "drawn" if (run / "results" / "sweep.png").is_file() else "missing",
            "summary.csv": "written" if (run / "results" / "summary.csv").is_file() else "missing",
        }
    tests = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?) in ([\d.]+)s", output, re.M)
    if tests:
        looked["pytest"] = f"{tests[-1][0]} (pytest's own time {tests[-1][1]} s)"
    if args.demo:
        t0 = time.perf_counter()
        demo = subprocess.run(
            ["bash", str(template / "scripts" / "demo.sh"), str(work / "demo")],
            capture_output=True,
            text=True,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
        )
        shown = (demo.stdout + demo.stderr).splitlines()
        rows.append(
            ("demo: bash scripts/demo.sh", time.perf_counter() - t0, f"exit {demo.returncode}, {len(shown)} lines")
        )
        looked["demo lines mentioning credentials"] = sum("credential" in line.lower() for line in shown)
        figures["demo_output"] = shown
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'seconds':>8}  result")
    for command, secs, result in rows:
        print(f"{command:<{width}}  {secs:>8.1f}  {result}")
    first_hour = sum(s for c, s, _ in rows if not c.startswith("demo:"))
    print(f"{'total (render + README steps)':<{width}}  {first_hour:>8.1f}")
    for key, value in looked.items():
        print(f"{key}: {value}")
    venv = project / ".venv"
    if venv.is_dir():
        size = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True).stdout.split()[0]
        print(f"venv size: {size} MB")
        figures["venv_mb"] = int(size)
    print(f"work dir: {work}")
    figures.update(steps=[{"command": c, "seconds": round(s, 2), "result": r} for c, s, r in rows], **looked)
    figures["total_s"] = round(first_hour, 2)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
