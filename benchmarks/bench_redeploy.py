"""Redeploy cost: bytes uploaded and wall time of `mlops deploy`, first / unchanged / model-only change.

    python benchmarks/bench_redeploy.py [--smoke]

On the local cluster (tests/infra: sshd with key + TOTP, rootless podman as the runtime), the
rendered project's own commands: `mlops build` (buildah, layer cache), then `mlops deploy --report`
three times:
  first        empty image store: the three archives uploaded (SFTP over the one SSH session),
               checked by SHA-256 on the cluster, converted (podman load)
  unchanged    the same commit again
  model-only   model/train.py edited and committed, `mlops build` again (params and data images keep
               their digests), deploy
Wall time = the whole command: login with key + one-time code (the code is taken before the clock
starts), the checks, uploads and conversions. Bytes = the deploy report's bytes_uploaded (what the
SFTP upload sent). Goal (issue #7): 0 bytes for unchanged images.
The full run uses the template's own model (numpy, scikit-learn, wandb from PyPI); --smoke uses the
standard-library benchmark model (benchmarks/_bench_model.py), so its image is small.
Not a test: nothing is asserted; --smoke is run by tests/test_benchmarks_smoke.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _bench_model  # noqa: E402
from _cluster import build, e2e, load_text, local_cluster, mlops, project  # noqa: E402
from _machine import describe  # noqa: E402

STAGES = ("params", "data", "model")


def deploy(proj: Path, cluster: dict, name: str) -> dict:
    report = proj / f"deploy-{name}.json"
    _, seconds = mlops(proj, cluster, "deploy", "--report", str(report))
    data = json.loads(report.read_text())
    return {"scenario": name, "seconds": seconds, "bytes": data["bytes_uploaded"],
            "per_image": {s: data["images"][s]["bytes_uploaded"] for s in STAGES},
            "converted": [s for s in STAGES if data["images"][s]["converted"]],
            "sizes": {s: data["images"][s]["size"] for s in STAGES}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="the small benchmark model, for CI")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    print(f"machine: {describe()}; {load_text()} at start")
    print(f"redeploy benchmark ({'benchmark model' if args.smoke else 'the template model'}; runtime podman)")
    results = []
    with local_cluster() as cluster:
        proj = project(cluster, _bench_model.parameters(4, 0.1),
                       model_files=_bench_model.FILES if args.smoke else None)
        _, build_s = build(proj, cluster)
        results.append(deploy(proj, cluster, "first"))
        results.append(deploy(proj, cluster, "unchanged"))
        train = proj / "model" / "train.py"
        train.write_text(train.read_text() + "\n# a model-only change (bench_redeploy.py)\n")
        e2e.git_commit(proj, "model-only change")
        before = json.loads((proj / "images" / "images.json").read_text())["images"]
        after, rebuild_s = build(proj, cluster)
        changed = [s for s in STAGES if after["images"][s]["digest"] != before[s]["digest"]]
        results.append(deploy(proj, cluster, "model-only"))
    sizes = results[0]["sizes"]
    print("  images (gzip archives): " + ", ".join(f"{s} {sizes[s] / 1e6:.1f} MB" for s in STAGES)
          + f"; build {build_s:.1f} s, rebuild after the change {rebuild_s:.1f} s (images changed: {', '.join(changed)})")
    print(f"  {'deploy':<12} {'wall s':>7} {'bytes uploaded':>15}  {'params':>12} {'data':>12} {'model':>12}  converted")
    for r in results:
        print(f"  {r['scenario']:<12} {r['seconds']:7.1f} {r['bytes']:>15,}  "
              + " ".join(f"{r['per_image'][s]:>12,}" for s in STAGES) + f"  {', '.join(r['converted']) or '-'}")
    unchanged = results[1]["bytes"]
    unchanged_in_model_only = sum(results[2]["per_image"][s] for s in STAGES if s not in changed)
    print("goals:")
    print(f"  unchanged deploy uploads {unchanged:,} bytes (goal 0): {'met' if unchanged == 0 else 'NOT met'}")
    print(f"  model-only change uploads {unchanged_in_model_only:,} bytes for the unchanged images (goal 0): "
          f"{'met' if unchanged_in_model_only == 0 else 'NOT met'}")
    print(f"{load_text()} at end")
    if args.json:
        args.json.write_text(json.dumps({"build_s": build_s, "rebuild_s": rebuild_s, "changed": changed,
                                         "deploys": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
