"""Rebuild benchmark: the rendered pipeline's build stage, cold, unchanged, and after a model/ change.

    python benchmarks/bench_rebuild.py          (uses $MLOPS_TEST_CACHE for the base image and the
                                                 buildah store if set, else a temp dir)

Runs gitlab-ci-local's build stage three times on one rendered project (registry on 127.0.0.1) and
prints per-image seconds and built/cached, from images/images.json. Figures, not assertions: the
assertions live in tests/pipeline/test_pipeline.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import pipeline as ps  # noqa: E402
from support.infra.registry import LocalRegistry  # noqa: E402
from support.render import render  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        tmp = Path(tmp)
        cache = Path(os.environ.get("MLOPS_TEST_CACHE") or tmp / "cache")
        env = ps.build_env(ps.store_env(cache))
        project = render(tmp / "out")
        ps.git_init(project)
        rows = []
        with LocalRegistry(tmp / "registry") as reg:
            for label, change in (
                ("first build", None),
                ("nothing changed", ""),
                ("model/ changed", "\n# benchmark change\n"),
            ):
                if change is not None:
                    if change:
                        with (project / "model" / "train.py").open("a") as fh:
                            fh.write(change)
                    ps.git_commit(project, label)
                t0 = time.monotonic()
                proc = ps.gcl(project, tmp / "home", "--stage", "build", env=env, registry_host=reg.host)
                wall = time.monotonic() - t0
                if proc.returncode != 0:
                    print((proc.stdout + proc.stderr)[-4000:], file=sys.stderr)
                    return 1
                images = ps.manifest(project)["images"]
                rows.append((label, wall, images))
        print(f"{'pipeline':<18}{'job wall s':>11}  " + "  ".join(f"{n:>16}" for n in ("params", "data", "model")))
        for label, wall, images in rows:
            cells = "  ".join(
                f"{('built' if images[n]['built'] else 'cached'):>7} {images[n]['seconds']:7.1f}s"
                for n in ("params", "data", "model")
            )
            print(f"{label:<18}{wall:>11.1f}  {cells}")
        first, changed = rows[0][1], rows[2][1]
        print(f"rebuild after a model/ change: {changed:.1f}s vs {first:.1f}s cold ({changed / first:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
