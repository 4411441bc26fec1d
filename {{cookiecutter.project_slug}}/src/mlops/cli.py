"""The `mlops` command: a thin layer of argparse over the modules that do the work.

Every CI job is one `mlops <verb>` line, and every verb also runs from a laptop. Every verb reads
and checks mlops.toml first (mlops.settings.load), so bad settings stop it before any login.
Exit codes (mlops.errors): 0 ok, 1 the work ran and something in it failed (e.g. a configuration),
2 bad input or setup, 3/4 `template check --strict`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import errors, settings
from .ssh import resolver


def _cmd_params_validate(args) -> int:
    from . import params

    doc = params.validate(args.params, args.schema, args.max)
    configurations = params.expand(doc)
    print(f"{args.params}: ok, {len(configurations)} configurations")
    return 0


def _cmd_params_expand(args) -> int:
    from . import params

    out = args.out or (Path(os.environ["PROJECT_DIR"]) / "envs" if os.environ.get("PROJECT_DIR") else None)
    if out is None:
        raise UsageError("--out: give the directory for the env files (or set PROJECT_DIR)")
    project_dir = args.project_dir or os.environ.get("PROJECT_DIR") or str(Path(out).resolve().parent)
    doc = params.validate(args.params, args.schema, args.max)
    configurations = params.expand(doc)
    params.write_envs(configurations, Path(out), project_dir)
    print(f"wrote {len(configurations)} env files and index.json to {out}")
    return 0


def _cmd_run(args) -> int:
    from . import local

    if not args.local:
        raise UsageError("run: only --local runs from here; the cluster run is `mlops submit`")
    _, failed = local.run_local(jobs=args.jobs, run_id=args.run_id)
    return 1 if failed else 0


def _cmd_config_check(args) -> int:
    # main() has loaded and checked the file already (settings.load raises Problems, exit 2).
    print(f"{settings.find_root() / settings.FILENAME}: ok")
    return 0


def _cmd_check_credentials(args) -> int:
    from . import credentials

    cfg = settings.load()
    results = credentials.check_all(
        cfg.answers(), interactive=sys.stdin.isatty() and not credentials.in_ci(), online=args.online, root=cfg.root
    )
    problems = credentials.report(results)
    return 2 if problems and (args.strict or credentials.strict()) else 0


def _cmd_variables(args) -> int:
    from . import variables

    cfg = settings.load()
    answers = cfg.answers()
    if args.variables_command == "write":
        print(f"wrote {variables.write_manifest(cfg.root, answers)}")
        return 0
    if args.variables_command == "local":
        path = cfg.root / variables.LOCAL_FILE
        if args.remove:
            path.unlink(missing_ok=True)
            print(f"removed {path}")
            return 0
        written, problems = variables.write_local(cfg.root, answers)
        for problem in problems:
            print(f"mlops variables local: {problem}", file=sys.stderr)
        if problems:
            print("mlops variables local: nothing was written", file=sys.stderr)
            return 2
        print(f"wrote {written} (mode 0600, gitignored; values are not shown)")
        return 0
    project = args.project or os.environ.get("CI_PROJECT_PATH")
    if not project:
        raise UsageError(
            "variables upload: --project: give the GitLab project path, e.g. group/"
            f"{cfg.project.slug} (or its numeric id)"
        )
    url = args.url or f"https://{cfg.project.gitlab_host}"
    return variables.upload(answers, project, url, os.environ.get("GITLAB_TOKEN"), apply=args.apply)


def _cmd_template_check(args) -> int:
    from . import template

    return template.check(strict=args.strict)


def _cmd_template_answers(args) -> int:
    import json

    from . import template

    doc = template.replay_file() if args.replay else template.answers()
    print(json.dumps(doc, indent=2))
    return 0


def _cmd_build(args) -> int:
    from . import images

    s = images.settings(
        builder=args.builder,
        push=not args.no_push,
        registry_image=args.registry_image,
        tag=args.tag,
        out_dir=args.out,
        cache_dir=args.cache,
    )
    images.build(s, names=args.images, force=args.force)
    return 0


def _cmd_images_keys(args) -> int:
    from . import images

    for name, key in images.keys(images.settings(push=False)).items():
        print(f"{name}\t{key}")
    return 0


def _cmd_images_prune(args) -> int:
    from . import images

    cfg, session = _cluster_session()
    with session:
        images.prune(session, cfg, args.keep)
    return 0


def _cmd_images_show(args) -> int:
    import json

    from . import images

    print(json.dumps(images.read_manifest(args.manifest), indent=1, sort_keys=True))
    return 0


# --- cluster verbs: each opens ONE SSH session (mlops.transport) and calls one module function
def _cluster_session():
    from .ssh.session import Session

    cfg = settings.load()
    return cfg, Session.from_settings(cfg)


def _cmd_deploy(args) -> int:
    from . import images, stages

    stages.check_manifest(images.read_manifest(args.manifest), str(args.manifest))  # before the login
    cfg, session = _cluster_session()
    with session:
        result = images.deploy(session, cfg, args.manifest)
    if args.report:
        images.write_report(result, args.report)
    return 0


def _submit_in(session, cfg, args, manifest: dict) -> int:
    """Submit (and with --wait, follow) a run over an open session; SIGTERM cancels the cluster jobs."""
    import json
    import signal

    from . import rundir
    from .cluster import state, submit

    if args.failed_only:
        run_id = submit.resolve_run_id(cfg, args.run_id)
    else:
        run_id = state.check_run_id(submit.run_id_from_env(args.run_id) or rundir.new_run_id("laptop"))
    if args.wait:  # cancelling the CI job (SIGTERM) cancels the cluster jobs too
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        record = submit.submit(session, cfg, manifest, run_id, failed_only=args.failed_only)
        Path("state").mkdir(exist_ok=True)  # the job ids, as the job's artifact (state/)
        Path("state", f"submit-{run_id}-{record['attempt']}.json").write_text(json.dumps(record, indent=1) + "\n")
        if not args.wait:
            return 0
        view = state.wait(session, cfg, run_id, args.wait)
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cancel finish
        submit.cancel(session, cfg, run_id)
        return 1
    print(f"run {run_id}: {state.format_counts(view['counts'])}")
    return 0 if view["counts"]["completed"] == len(view["configs"]) else 1


def _cmd_submit(args) -> int:
    from . import images, stages

    # The run job has the deploy job's report (the digests really deployed), not the build's images/.
    deployed = Path("deploy/report.json")
    manifest_path = deployed if not args.manifest.is_file() and deployed.is_file() else args.manifest
    manifest = images.read_manifest(manifest_path)
    stages.check_manifest(manifest, str(manifest_path))  # before the login
    cfg, session = _cluster_session()
    with session:
        return _submit_in(session, cfg, args, manifest)


def _cmd_launch(args) -> int:
    """deploy + submit over ONE login (one click, one one-time code: the CI job of the click)."""
    from . import images, stages

    manifest = images.read_manifest(args.manifest)
    stages.check_manifest(manifest, str(args.manifest))  # before the login
    cfg, session = _cluster_session()
    with session:  # logged in first: a typed one-time code is used before any slow work
        result = images.deploy(session, cfg, args.manifest)
        images.write_report(result, args.report)
        return _submit_in(session, cfg, args, manifest)


def _cmd_status(args) -> int:
    import json

    from .cluster import state, submit

    cfg, session = _cluster_session()
    run_id = submit.resolve_run_id(cfg, args.run_id)
    with session:
        view = state.wait(session, cfg, run_id, args.wait) if args.wait else state.status(session, cfg, run_id)
    if args.json:
        hidden = ("attempts", "all_attempts", "progress")
        print(json.dumps({k: v for k, v in view.items() if k not in hidden}, indent=1, sort_keys=True))
        return 0
    never = "" if view["submitted"] else " (never submitted: `mlops submit` submits it)"
    print(f"run {run_id} ({view['run_dir']}): {state.format_counts(view['counts'])}{never}")
    for name, stage_state in view["stages"].items():
        print(f"  stage {name:<6} {stage_state}")
    for c in sorted(view["configs"].values(), key=lambda c: c["index"]):
        print(f"  {c['index']:>4} {c['config_id']} {c['status']}")
    print(f"  notification: {state.format_notify(view['notify'])}" + ("; collected" if view["collected"] else ""))
    for line in view["problems"]:
        print(f"  warning: {line}")
    return 0


def _cmd_collect(args) -> int:
    from .cluster import runs, submit

    cfg, session = _cluster_session()
    if args.all_final:
        with session:
            runs.collect_all_final(session, cfg, args.out)
        return 0
    run_id = submit.resolve_run_id(cfg, args.run_id)
    with session:
        result = runs.collect_run(session, cfg, run_id, args.out, wait=args.wait, require_final=args.require_final)
    return 0 if result["ok"] else 1


def _cmd_cancel(args) -> int:
    from .cluster import submit

    cfg, session = _cluster_session()
    run_id = submit.resolve_run_id(cfg, args.run_id)
    with session:
        submit.cancel(session, cfg, run_id)
    return 0


class UsageError(errors.BadInput):
    """A verb used the wrong way (exit 2); the message says how to call it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_params = sub.add_parser("params", help="validate or expand params/parameters.json")
    psub = p_params.add_subparsers(dest="params_command", required=True, metavar="ACTION")
    for name, func, helptext in (
        ("validate", _cmd_params_validate, "check the file against its schema"),
        ("expand", _cmd_params_expand, "write one env file per configuration"),
    ):
        p = psub.add_parser(name, help=helptext)
        p.add_argument("--params", type=Path, default=Path("params/parameters.json"), help="parameters file")
        p.add_argument("--schema", type=Path, default=None, help="schema (default: beside the parameters file)")
        p.add_argument(
            "--max", type=int, default=None, help="cap on configurations (default: the file's max_configurations)"
        )
        if name == "expand":
            p.add_argument(
                "--out", type=Path, default=None, help="directory for env files (default: $PROJECT_DIR/envs)"
            )
            p.add_argument(
                "--project-dir",
                default=None,
                help="project dir as the model sees it, for DATA_DIR/RESULT_DIR (default: $PROJECT_DIR or OUT/..)",
            )
        p.set_defaults(func=func)

    p_run = sub.add_parser("run", help="run the whole sweep")
    p_run.add_argument("--local", action="store_true", help="on this machine, no containers, no accounts")
    p_run.add_argument("--jobs", "-j", type=int, default=1, help="configurations trained at once")
    p_run.add_argument("--run-id", default=None, help="name of the run directory (default: local-<time>-<random>)")
    p_run.set_defaults(func=_cmd_run)

    p_build = sub.add_parser("build", help="build, save and push the images (unchanged ones come from the cache)")
    p_build.add_argument("images", nargs="*", help="only these images (default: all stages)")
    p_build.add_argument(
        "--builder",
        default=os.environ.get("MLOPS_BUILDER") or None,
        help="must match mlops.toml build.builder (default: $MLOPS_BUILDER, the CI input)",
    )
    p_build.add_argument("--no-push", action="store_true", help="only build and save the archives")
    p_build.add_argument(
        "--registry-image",
        default=None,
        help="push to REF/<name>:TAG (default: $MLOPS_REGISTRY_IMAGE, else $CI_REGISTRY_IMAGE)",
    )
    p_build.add_argument("--tag", default=None, help="image tag (default: $CI_COMMIT_SHA, else the git commit)")
    p_build.add_argument("--out", type=Path, default=None, help="archives + images.json (default: images/)")
    p_build.add_argument("--cache", type=Path, default=None, help="build cache (default: .mlops-cache/images/)")
    p_build.add_argument("--force", action="store_true", help="rebuild even when the cache has the image")
    p_build.set_defaults(func=_cmd_build)

    p_images = sub.add_parser("images", help="inspect image input keys and the images manifest")
    isub = p_images.add_subparsers(dest="images_command", required=True, metavar="ACTION")
    isub.add_parser("keys", help="print each image's input key (what decides a rebuild)").set_defaults(
        func=_cmd_images_keys
    )
    p_show = isub.add_parser("show", help="print images/images.json")
    p_show.add_argument("--manifest", type=Path, default=Path("images/images.json"))
    p_show.set_defaults(func=_cmd_images_show)
    p_prune = isub.add_parser(
        "prune",
        help="remove from the cluster the image blobs that neither the last N commits nor a queued or running run use",
    )
    p_prune.add_argument("--keep", type=int, default=None, help="commits to keep (default: mlops.toml images.keep, 5)")
    p_prune.set_defaults(func=_cmd_images_prune)

    # Cluster verbs (each is also a CI job in .gitlab/ci/cluster.yml).
    run_help = "run id (default: $MLOPS_RUN_ID, p$CI_PIPELINE_ID, else the last submit from here)"
    p = sub.add_parser(
        "deploy", help="upload and convert this commit's images on the cluster (unchanged ones: 0 bytes)"
    )
    p.add_argument("--manifest", type=Path, default=Path("images/images.json"), help="images manifest of mlops build")
    p.add_argument(
        "--report", type=Path, default=Path("deploy/report.json"), help="where to write what was uploaded (JSON)"
    )
    p.set_defaults(func=_cmd_deploy)
    for verb, helptext, func in (
        (
            "submit",
            "start the sweep on the cluster (params -> data -> model arrays -> notify); safe to retry",
            _cmd_submit,
        ),
        ("launch", "deploy + submit over one login (the CI job of the click)", _cmd_launch),
    ):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument(
            "--manifest", type=Path, default=Path("images/images.json"), help="images manifest of mlops build"
        )
        if verb == "launch":
            p.add_argument(
                "--report", type=Path, default=Path("deploy/report.json"), help="what deploy uploaded (JSON)"
            )
        p.add_argument("--run-id", default=None, help=run_help)
        p.add_argument("--failed-only", action="store_true", help="rerun only the configurations that did not complete")
        p.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="wait for the sweep; SIGTERM (cancelling the job) cancels the cluster jobs",
        )
        p.set_defaults(func=func)
    p = sub.add_parser("status", help="state of each configuration of a run")
    p.add_argument("--run-id", default=None, help=run_help)
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="poll until every configuration is final")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("collect", help="download results; write junit.xml, metrics.txt, summary and plot")
    p.add_argument("--run-id", default=None, help=run_help)
    p.add_argument("--out", type=Path, default=Path("results"), help="artifacts directory")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="first wait until the sweep is final")
    p.add_argument(
        "--require-final",
        action="store_true",
        help="refuse (exit 2, nothing downloaded) a run that is not final (the triggered pipeline)",
    )
    p.add_argument(
        "--all-final",
        action="store_true",
        help="every final run not yet collected, each into OUT/<run id>/ (the scheduled pipeline)",
    )
    p.set_defaults(func=_cmd_collect)
    p = sub.add_parser("cancel", help="cancel the cluster jobs of a run")
    p.add_argument("--run-id", default=None, help=run_help)
    p.set_defaults(func=_cmd_cancel)

    p_config = sub.add_parser("config", help="check mlops.toml")
    csub = p_config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    csub.add_parser("check", help="validate mlops.toml with the template's rules").set_defaults(func=_cmd_config_check)

    p = sub.add_parser(
        "check-credentials",
        help="check the SSH key, known_hosts, TOTP, W&B and GitLab credentials on this machine (never prints a secret)",
    )
    p.add_argument("--online", action="store_true", help="also log in to the cluster and ask GitLab about the token")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 when something is missing or wrong (also: MLOPS_STRICT_CREDENTIALS=1)",
    )
    p.set_defaults(func=_cmd_check_credentials)

    p_var = sub.add_parser("variables", help="the CI/CD variable manifest .gitlab/ci-variables.yml and its values")
    vsub = p_var.add_subparsers(dest="variables_command", required=True, metavar="ACTION")
    vsub.add_parser("write", help="regenerate .gitlab/ci-variables.yml from mlops.toml").set_defaults(
        func=_cmd_variables
    )
    p = vsub.add_parser(
        "upload", help="set the variables on the GitLab project (dry run unless --apply; token from $GITLAB_TOKEN)"
    )
    p.add_argument("--project", default=None, help="GitLab project path or id (default: $CI_PROJECT_PATH)")
    p.add_argument("--url", default=None, help="GitLab URL (default: https://<project.gitlab_host>)")
    p.add_argument("--apply", action="store_true", help="really send them (default: only say what would be set)")
    p.set_defaults(func=_cmd_variables)
    p = vsub.add_parser("local", help="write the untracked 0600 .gitlab-ci-local-variables.yml for gitlab-ci-local")
    p.add_argument("--remove", action="store_true", help="delete the file instead")
    p.set_defaults(func=_cmd_variables)

    p_tpl = sub.add_parser("template", help="this project's link to the template (cruft)")
    tsub = p_tpl.add_subparsers(dest="template_command", required=True, metavar="ACTION")
    p = tsub.add_parser("check", help="has the template moved on? (cruft check; a warning, not a failure)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 when out of date, 4 when it cannot tell (CI shows these as warnings)",
    )
    p.set_defaults(func=_cmd_template_check)
    p = tsub.add_parser("answers", help="print the template answers from mlops.toml as JSON")
    p.add_argument("--replay", action="store_true", help='as a cookiecutter replay file ({"cookiecutter": ...})')
    p.set_defaults(func=_cmd_template_answers)
    return parser


# Verbs that also run where there is no mlops.toml: `params` runs inside the params image.
_SETTINGS_OPTIONAL = ("params",)


def _load_settings(command: str) -> settings.Settings | None:
    """Read and check mlops.toml before the verb does anything (raises errors.Problems, exit 2)."""
    if command in _SETTINGS_OPTIONAL:
        try:
            settings.find_root()
        except errors.BadInput:
            return None
    return settings.load()


def main(argv: list[str] | None = None) -> int:
    """The `mlops` command: parse, check mlops.toml, run the verb; an MlopsError becomes its exit code."""
    resolver.scrub()  # before any name is resolved: no variable steers where the login goes (mlops.ssh.resolver)
    args = build_parser().parse_args(argv)
    try:
        _load_settings(args.command)
        return args.func(args)
    except errors.MlopsError as exc:
        print(f"mlops {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
