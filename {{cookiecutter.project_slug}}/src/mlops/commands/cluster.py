"""The cluster verbs: deploy, submit, launch, status, collect, cancel (room: mlops.cluster.verbs, each
over one login). Each is also a CI job in .gitlab/ci/cluster.yml, with `--cluster NAME`."""

from __future__ import annotations

from pathlib import Path

from ..cluster import verbs as cluster_verbs
from . import Verbs, add_run_id

MANIFEST = Path("images/images.json")


def register(verbs: Verbs) -> None:
    p = verbs.add(
        "deploy",
        _deploy,
        "upload and convert this commit's images on the cluster (unchanged ones: 0 bytes)",
        cluster=True,
    )
    p.add_argument("--manifest", type=Path, default=MANIFEST, help="images manifest of mlops build")
    p.add_argument("--report", type=Path, default=cluster_verbs.DEPLOY_REPORT, help="where to write what was uploaded")
    for name, handler, help in (
        ("submit", _submit, "start the sweep on the cluster (params -> data -> model arrays -> notify); safe to retry"),
        ("launch", _launch, "deploy + submit over one login (the CI job of the click)"),
    ):
        p = verbs.add(name, handler, help, cluster=True)
        p.add_argument("--manifest", type=Path, default=MANIFEST, help="images manifest of mlops build")
        if name == "launch":
            p.add_argument("--report", type=Path, default=cluster_verbs.DEPLOY_REPORT, help="what deploy uploaded")
        add_run_id(p)
        p.add_argument("--failed-only", action="store_true", help="rerun only the configurations that did not complete")
        p.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="wait for the sweep; SIGTERM (cancelling the job) cancels the cluster jobs",
        )
    p = verbs.add("status", _status, "state of each configuration of a run", cluster=True)
    add_run_id(p)
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="poll until every configuration is final")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verbs.add("collect", _collect, "download results; write junit.xml, metrics.txt, summary and plot", cluster=True)
    add_run_id(p)
    p.add_argument("--out", type=Path, default=Path("results"), help="artifacts directory (OUT/<cluster>/<run id>/)")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="first wait until the sweep is final")
    p.add_argument(
        "--require-final", action="store_true", help="refuse (exit 2, nothing downloaded) a run that is not final"
    )
    p.add_argument(
        "--all-final",
        action="store_true",
        help="every final run not yet collected, each into OUT/<cluster>/<run id>/ (triggered, scheduled pipelines)",
    )
    p.add_argument(
        "--unattended",
        action="store_true",
        help="exit 0 with one line, without logging in, when the login needs a code a person types",
    )
    p = verbs.add("cancel", _cancel, "cancel the cluster jobs of a run", cluster=True)
    add_run_id(p)


def _deploy(args, s) -> None:
    cluster_verbs.deploy(s, args.manifest, args.report)


def _submit(args, s) -> None:
    cluster_verbs.submit(s, args.manifest, args.run_id, failed_only=args.failed_only, wait=args.wait)


def _launch(args, s) -> None:
    cluster_verbs.launch(s, args.manifest, args.report, args.run_id, failed_only=args.failed_only, wait=args.wait)


def _status(args, s) -> None:
    cluster_verbs.status(s, args.run_id, wait=args.wait, as_json=args.json)


def _collect(args, s) -> None:
    cluster_verbs.collect(
        s,
        args.out,
        args.run_id,
        wait=args.wait,
        require_final=args.require_final,
        all_final=args.all_final,
        unattended=args.unattended,
    )


def _cancel(args, s) -> None:
    cluster_verbs.cancel(s, args.run_id)
