"""Memory of collect's extraction on results streams with hostile tar headers (issue 17.5).

    python benchmarks/bench_tar_headers.py [--mib 1200] [--template DIR]

Each case runs in a fresh Python process (so peak RSS belongs to it alone): a stream of a few
hundred KB whose one extended header (PAX 'x', GNU long name 'L', long link 'K', global PAX 'g')
unpacks to --mib MiB, followed by a normal member. Printed per case: compressed size, peak RSS of
the extraction (ru_maxrss minus the process's RSS before it), peak bytes allocated (tracemalloc),
seconds, and what the extractor said. --template points at another checkout of the template (e.g.
`git archive <old commit>` unpacked) to measure the code before the change. Not a test: nothing is
asserted (tests/unit/test_results_safety.py bounds the same with 256 MiB headers).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent
KINDS = {"pax": b"x", "gnu-longname": b"L", "gnu-longlink": b"K", "pax-global": b"g"}


def one(template: Path, kind: bytes, mib: int) -> dict:
    """Runs in the child: build the stream, extract it, measure."""
    sys.path[:0] = [str(TEMPLATE / "tests"), str(template / "{{cookiecutter.project_slug}}" / "src")]
    from mlops.results import extract
    from support import tar_craft as craft

    try:  # the caps as the checkout defines them: settings.Collect defaults (now) or results.caps.Caps (0.2)
        from mlops.results.caps import defaults

        caps = defaults()
    except ImportError:
        from mlops.results.caps import Caps

        caps = Caps()
    after = [craft.regular("results/after.txt", b"x"), craft.regular("results/kept", b"y"), craft.end()]
    data = craft.gzipped([craft.huge_header(kind, mib << 20), *after])
    with tempfile.TemporaryDirectory() as dest:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            done = extract.extract(io.BytesIO(data), dest, caps)
            said = done.stopped or "; ".join(f"{n}: {why}" for n, why in done.skipped) or "no member refused"
            kept = sorted(os.listdir(Path(dest) / "results")) if (Path(dest) / "results").is_dir() else []
        except Exception as exc:  # noqa: BLE001 (the old code may raise: that is a figure too)
            said, kept = f"raised {type(exc).__name__}: {str(exc)[:120]}", []
        seconds = time.perf_counter() - t0
        peak_alloc = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "compressed_bytes": len(data),
        "peak_rss_mib": round((peak - base) / 1024, 1),
        "peak_alloc_mib": round(peak_alloc / (1 << 20), 1),
        "seconds": round(seconds, 1),
        "kept": kept,
        "said": said[:200],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1200, help="size of the one extended header (MiB)")
    ap.add_argument("--template", type=Path, default=TEMPLATE, help="checkout whose mlops package is measured")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.template, KINDS[args.child[0]], int(args.child[1]))))
        return
    print(f"template: {args.template}; one extended header of {args.mib:,} MiB per stream")
    for name in KINDS:
        proc = subprocess.run(
            [sys.executable, __file__, "--template", str(args.template), "--child", name, str(args.mib)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"  {name:<13} child failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
            continue
        r = json.loads(proc.stdout)
        print(
            f"  {name:<13} {r['compressed_bytes']:>10,} B compressed  peak RSS +{r['peak_rss_mib']:>7.1f} MiB  "
            f"allocated {r['peak_alloc_mib']:>7.1f} MiB  {r['seconds']:>5.1f} s  kept {r['kept']}  | {r['said']}"
        )


if __name__ == "__main__":
    main()
