"""Click-to-login benchmark (issue 18.7): seconds from a cluster job's start to its first connection to
the login node, under gitlab-ci-local, for this template and (with --template) another checkout.

    python benchmarks/bench_click.py [--template /path/to/an/older/template] [--repeat 3]

The cluster is a TCP stand-in on 127.0.0.1 that records when the job connects (an SSH banner, then
it hangs up: the login itself would follow within milliseconds). The job is the status job of the
rendered default project (it logs in first thing, like the click; deploy also needs the build's
images). Its start is the moment gitlab-ci-local prints "<job> starting shell". This template's jobs
need the tool job's artifact, made once beforehand from the locked wheels on a package index on
127.0.0.1; a template whose jobs pip-install the tool gets the test machine's pip settings (its
index). Figures, not assertions: the jobs fail at the stand-in's hang-up either way.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import hostile_ci as hc  # noqa: E402
from support import pipeline as ps  # noqa: E402
from support.render import TEMPLATE, render  # noqa: E402


def _variable(name: str, value: str, kind: str) -> str:
    block = "".join(f"      {line}\n" for line in value.splitlines())
    return f"{name}:\n  type: {kind}\n  values:\n    'hpc/*': |\n{block}"


def measure(template: Path, tmp: Path, cache: Path, repeat: int) -> list[float]:
    """Seconds from '<status job> starting shell' to the stand-in's accept, `repeat` times."""
    figures = []
    with hc.TcpRecorder() as cluster:
        project = render(tmp / "render", template=template, hpc_host="127.0.0.1", hpc_port=cluster.port)
        index = None
        if (project / ".gitlab" / "ci" / "lock").is_dir():
            index = ps.LocalIndex(ps.locked_wheels(project, cache)).__enter__()
            ps.use_index(project, index.url)
        key = tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        pub = key.with_suffix(".pub").read_text()
        (project / ".gitlab-ci-local-variables.yml").write_text(
            _variable("HPC_SSH_PRIVATE_KEY", key.read_text(), "file")
        )
        (project / ".gitlab" / "known_hosts").write_text(f"[127.0.0.1]:{cluster.port} {pub}")  # committed below
        ps.git_init(project)
        listed = ps.list_jobs(project, tmp / "home", "CI_COMMIT_REF_PROTECTED=true")
        job = next(name for name in listed if name == "status" or name.startswith("status-"))
        base = [ps.GCL, "--force-shell-executor", "--shell-isolation", "--home", str(tmp / "home"), "--no-color"]
        base += ["--variable", "CI_COMMIT_REF_PROTECTED=true", "--variable", "HPC_OTP=123456"]
        if "tool" in listed:
            subprocess.run([*base, "tool"], cwd=project, capture_output=True, timeout=900, check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
        for _ in range(repeat):
            before = len(cluster.connections)
            proc = subprocess.Popen([*base, job], cwd=project, stdout=subprocess.PIPE, text=True, env=env)
            started = None
            assert proc.stdout is not None
            for line in proc.stdout:
                if started is None and re.match(rf"^{re.escape(job)} starting shell", line):
                    started = time.time()
            proc.wait(timeout=900)
            if started is None or len(cluster.connections) == before:
                raise SystemExit(f"{template}: {job} did not start or never connected")
            figures.append(cluster.connections[before]["at"] - started)
        if index is not None:
            index.__exit__(None, None, None)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, action="append", default=[], help="another template checkout")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-click-") as tmp:
        cache = Path(os.environ.get("MLOPS_TEST_CACHE") or Path(tmp) / "cache")
        print(f"{'template':<40}{'median s':>10}  runs (s)")
        for i, template in enumerate([TEMPLATE, *args.template]):
            figures = measure(template, Path(tmp) / str(i), cache, args.repeat)
            runs = ", ".join(f"{f:.1f}" for f in figures)
            print(f"{str(template):<40}{statistics.median(figures):>10.1f}  {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
