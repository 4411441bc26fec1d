"""`mlops runs` and `mlops compare A B`: the runs on this machine and two of them side by side
(room: mlops.results.compare)."""

from __future__ import annotations

from ..results import compare
from . import Verbs


def register(verbs: Verbs) -> None:
    p = verbs.add("runs", _runs, "the runs on this machine: runs/<id> and results/<cluster>/<id>, best metric")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verbs.add("compare", _compare, "two runs side by side; the same configurations with the metric change")
    p.add_argument("a", help="run A: <run-id>, <cluster>/<run-id> (local/<id> for runs/) or its directory")
    p.add_argument("b", help="run B, named the same way")
    p.add_argument("--metric", default=None, help="the metric to compare (default: the primary one, e.g. mae)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _runs(args, s) -> None:
    print(compare.runs_command(s, args.json), end="")


def _compare(args, s) -> None:
    print(compare.compare_command(s, args.a, args.b, args.metric, args.json), end="")
