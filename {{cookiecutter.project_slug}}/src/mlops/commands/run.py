"""`mlops run --local`: the whole sweep on this machine, no containers, no accounts (rooms: mlops.local,
mlops.local_one for one configuration in the foreground)."""

from __future__ import annotations

from .. import local, local_one
from ..errors import UsageError, WorkFailed
from . import Verbs


def register(verbs: Verbs) -> None:
    p = verbs.add("run", _run, "run the whole sweep")
    p.add_argument("--local", action="store_true", help="on this machine, no containers, no accounts")
    p.add_argument("--jobs", "-j", type=int, default=1, help="configurations trained at once")
    p.add_argument(
        "--run-id",
        default=None,
        help="name of the run directory (default: local-<time>-<random>; with --resume: the newest run)",
    )
    p.add_argument(
        "--resume", action="store_true", help="go on with a stopped run: the configurations that did not end"
    )
    p.add_argument(
        "--failed-only", action="store_true", help="in an existing run, run every configuration not completed again"
    )
    p.add_argument(
        "--config", default=None, metavar="ID", help="run ONE configuration (its id) in the foreground, for debugging"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --config (else the first configuration): change one parameter; repeatable",
    )


def _run(args, s) -> None:
    if not args.local:
        raise UsageError("run: only --local runs from here; the cluster run is `mlops submit`")
    if args.config or args.set:
        if args.resume or args.failed_only:
            raise UsageError("run --local: --config/--set run one configuration in a new run; not with --resume")
        _, failed = local_one.run_one(s.root, config_id=args.config, sets=args.set, run_id=args.run_id)
    else:
        _, failed = local.run_local(
            s.root, jobs=args.jobs, run_id=args.run_id, resume=args.resume, failed_only=args.failed_only
        )
    if failed:
        raise WorkFailed(f"{failed} configuration(s) not completed or bad (the table above says which and why)")
