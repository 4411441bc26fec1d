"""`mlops run --local`: the whole sweep on this machine, no containers, no accounts (room: mlops.local)."""

from __future__ import annotations

from .. import local
from ..errors import UsageError, WorkFailed
from . import Verbs


def register(verbs: Verbs) -> None:
    p = verbs.add("run", _run, "run the whole sweep")
    p.add_argument("--local", action="store_true", help="on this machine, no containers, no accounts")
    p.add_argument("--jobs", "-j", type=int, default=1, help="configurations trained at once")
    p.add_argument("--run-id", default=None, help="name of the run directory (default: local-<time>-<random>)")


def _run(args, s) -> None:
    if not args.local:
        raise UsageError("run: only --local runs from here; the cluster run is `mlops submit`")
    _, failed = local.run_local(s.root, jobs=args.jobs, run_id=args.run_id)
    if failed:
        raise WorkFailed(f"{failed} configuration(s) failed (the table above says which and why)")
