"""Redeploy cost with the cluster's blob store: bytes uploaded, deploy wall time, conversion time.

    python benchmarks/bench_redeploy.py [--smoke] [--runtime podman|charliecloud|apptainer|apptainer-nofuse ...]
                                        [--pad-mb 2000]

On the local cluster (tests/support/infra: sshd with key + TOTP, rootless podman, charliecloud, the real
Apptainer run unprivileged as in the e2e tier: tests/support/apptainer/README.md), the
rendered project's own commands: `mlops build` (buildah, layer cache), then `mlops deploy --report`
for each runtime given (side by side: one project and one store per runtime), per scenario:
  first         empty store: every blob uploaded once (SFTP), verified by SHA-256, converted
  unchanged     the same commit again
  code-only     a one-line change to model/train.py, built again: the code layer, config, manifest
  requirements  a change to model/requirements.txt: the dependency layer and everything above it
Wall time = the whole command: login with key + one-time code (the code is taken before the clock
starts), the store check, uploads and conversions; "convert s" = the conversions on the cluster
(from the deploy report). --pad-mb N adds a RUN that writes N MB of random (incompressible) data
in a layer below the code to the model image, standing for a CUDA image. `apptainer-nofuse` is
Apptainer where the user cannot open /dev/fuse: deploy falls back to sandbox directories (the cost of
that fallback, against `apptainer`); "disk MB" = what the store's converted images take after the
first deploy (du, hard links once; the blobs not counted).
Goals (issue 13): unchanged 0 bytes; code-only <= 1 MB and <= 10% of the first deploy's time.
The full run uses the template's own model (numpy, scikit-learn, wandb from PyPI); --smoke uses the
standard-library benchmark model (benchmarks/_bench_model.py), so its image is small.
Not a test: nothing is asserted; --smoke is run by tests/{project,e2e}/test_benchmarks_*_smoke.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _bench_model  # noqa: E402
from _cluster import build, e2e, load_text, local_cluster, mlops, project  # noqa: E402
from _machine import describe  # noqa: E402

from support.infra.apptainer import ApptainerForUser  # noqa: E402

STAGES = ("params", "data", "model")
SCENARIOS = ("first", "unchanged", "code-only", "requirements")


def deploy(proj: Path, cluster: dict, name: str) -> dict:
    report = proj / f"deploy-{name}.json"
    _, seconds = mlops(proj, cluster, "deploy", "--report", str(report))
    data = json.loads(report.read_text())
    return {
        "scenario": name,
        "seconds": seconds,
        "bytes": data["bytes_uploaded"],
        "per_image": {s: data["images"][s]["bytes_uploaded"] for s in STAGES},
        "convert_s": sum(data["images"][s].get("convert_seconds", 0.0) for s in STAGES),
        "converted": [s for s in STAGES if data["images"][s]["converted"]],
        "sizes": {s: data["images"][s]["size"] for s in STAGES},
        "forms": {s: data["images"][s].get("form", "") for s in STAGES},
    }


def pad(proj: Path, megabytes: int) -> None:
    """A layer of `megabytes` MB of random bytes below the model's code (a stand-in for CUDA)."""
    dockerfile = proj / "model" / "Dockerfile"
    text = dockerfile.read_text()
    anchor = "COPY . /app/"
    run = f"RUN head -c {megabytes}M /dev/urandom > /opt/padding.bin  # bench_redeploy.py --pad-mb\n"
    dockerfile.write_text(text.replace(anchor, run + anchor, 1))


def converted_mb(proj: Path, cluster: dict) -> float:
    """MB the converted images take in the store (du: hard links once), without the blobs and layouts."""
    store = Path(cluster["workdir"]) / proj.name / "images"

    def du(*paths: Path) -> int:
        out = subprocess.run(["du", "-sbc", *map(str, paths)], capture_output=True, text=True).stdout
        return int(out.splitlines()[-1].split()[0]) if out else 0

    return (du(store) - du(store / "blobs", store / "refs")) / 1e6


@contextlib.contextmanager
def runtime_on_path(cluster: dict, runtime: str):
    """apptainer / apptainer-nofuse: the real Apptainer for the cluster user (unprivileged, through the
    tests' root wrapper) first on the PATH of its sessions and jobs; nothing for the others."""
    if not runtime.startswith("apptainer"):
        yield
        return
    srv = cluster["server"]
    base = dict(srv.setenv)
    with ApptainerForUser(srv.user) as appt:
        mode = "nofuse" if runtime.endswith("nofuse") else "fuse"
        srv.set_env({**base, "PATH": f"{appt.path(mode)}:/usr/local/bin:/usr/bin:/bin"})
        try:
            yield
        finally:
            srv.set_env(base)


def scenarios(runtime: str, smoke: bool, pad_mb: int) -> tuple[list[dict], dict]:
    results, builds = [], {}
    with local_cluster() as cluster, runtime_on_path(cluster, runtime):
        proj = project(cluster, _bench_model.parameters(4, 0.1), model_files=_bench_model.FILES if smoke else None)
        if runtime != "podman":
            e2e.set_toml(proj, "cluster", "runtime", f'"{runtime.removesuffix("-nofuse")}"')
        if pad_mb:
            pad(proj, pad_mb)
        if pad_mb or runtime != "podman":
            e2e.git_commit(proj, "benchmark setup")
        _, builds["first"] = build(proj, cluster)
        results.append(deploy(proj, cluster, "first"))
        results[-1]["disk_mb"] = converted_mb(proj, cluster)
        results.append(deploy(proj, cluster, "unchanged"))
        train = proj / "model" / "train.py"
        train.write_text(train.read_text() + "\n# a one-line change (bench_redeploy.py)\n")
        e2e.git_commit(proj, "code-only change")
        _, builds["code-only"] = build(proj, cluster)
        results.append(deploy(proj, cluster, "code-only"))
        reqs = proj / "model" / "requirements.txt"
        reqs.write_text(reqs.read_text() + "\n# a requirements change (bench_redeploy.py)\n")
        e2e.git_commit(proj, "requirements change")
        _, builds["requirements"] = build(proj, cluster)
        results.append(deploy(proj, cluster, "requirements"))
    return results, builds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="the small benchmark model, for CI")
    ap.add_argument(
        "--runtime",
        action="append",
        choices=("podman", "charliecloud", "apptainer", "apptainer-nofuse"),
        default=None,
        help="runtime(s) to measure side by side (default: podman and charliecloud; --smoke: podman)",
    )
    ap.add_argument("--pad-mb", type=int, default=0, help="pad the model image with N MB of random data")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    runtimes = args.runtime or (["podman"] if args.smoke else ["podman", "charliecloud"])
    print(f"machine: {describe()}; {load_text()} at start")
    print(
        f"redeploy benchmark ({'benchmark model' if args.smoke else 'the template model'}"
        f"{f', model padded by {args.pad_mb} MB' if args.pad_mb else ''}; runtimes {', '.join(runtimes)})"
    )
    figures = {}
    for rt in runtimes:
        results, builds = scenarios(rt, args.smoke, args.pad_mb)
        figures[rt] = {"deploys": results, "build_s": builds}
        sizes = results[0]["sizes"]
        print(
            f"{rt}: images "
            + ", ".join(f"{s} {sizes[s] / 1e6:.1f} MB" for s in STAGES)
            + "; builds "
            + ", ".join(f"{k} {v:.1f} s" for k, v in builds.items())
            + f"; converted images after the first deploy: {results[0]['disk_mb']:.1f} MB on disk"
        )
        print(
            f"  {'deploy':<12} {'wall s':>7} {'convert s':>9} {'bytes uploaded':>15}  {'params':>12} {'data':>12}"
            f" {'model':>12}  converted"
        )
        for r in results:
            print(
                f"  {r['scenario']:<12} {r['seconds']:7.1f} {r['convert_s']:9.1f} {r['bytes']:>15,}  "
                + " ".join(f"{r['per_image'][s]:>12,}" for s in STAGES)
                + f"  {', '.join(r['converted']) or '-'} ({r['forms']['model']})"
            )
        by = {r["scenario"]: r for r in results}
        ratio = by["code-only"]["seconds"] / by["first"]["seconds"]
        print("  goals:")
        print(
            f"    unchanged uploads {by['unchanged']['bytes']:,} B (goal 0): "
            f"{'met' if by['unchanged']['bytes'] == 0 else 'NOT met'}"
        )
        print(
            f"    code-only uploads {by['code-only']['bytes']:,} B (goal <= 1 MB): "
            f"{'met' if by['code-only']['bytes'] <= 1_000_000 else 'NOT met'}"
        )
        print(
            f"    code-only deploy+conversion {by['code-only']['seconds']:.1f} s = {ratio:.1%} of the first "
            f"({by['first']['seconds']:.1f} s; goal <= 10%): {'met' if ratio <= 0.10 else 'NOT met'}"
        )
    print(f"{load_text()} at end")
    if args.json:
        podman = figures[runtimes[0]]
        args.json.write_text(json.dumps({"runtimes": figures, "deploys": podman["deploys"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
