"""The `mlops` command: a thin layer of argparse over the modules that do the work.

Every CI job is one `mlops <verb>` line, and every verb also runs from a laptop. Exit codes:
0 ok, 1 the work ran and something in it failed (e.g. a configuration), 2 bad input or setup.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import config as config_mod


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
    cfg = config_mod.load()
    problems = config_mod.check(cfg)
    for problem in problems:
        print(f"mlops.toml {problem}", file=sys.stderr)
    if not problems:
        print(f"{cfg.root / config_mod.FILENAME}: ok")
    return 2 if problems else 0


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_params = sub.add_parser("params", help="validate or expand params/parameters.json")
    psub = p_params.add_subparsers(dest="params_command", required=True, metavar="ACTION")
    for name, func, helptext in (("validate", _cmd_params_validate, "check the file against its schema"),
                                 ("expand", _cmd_params_expand, "write one env file per configuration")):
        p = psub.add_parser(name, help=helptext)
        p.add_argument("--params", type=Path, default=Path("params/parameters.json"), help="parameters file")
        p.add_argument("--schema", type=Path, default=None, help="schema (default: beside the parameters file)")
        p.add_argument("--max", type=int, default=None, help="cap on configurations (default: the file's max_configurations)")
        if name == "expand":
            p.add_argument("--out", type=Path, default=None, help="directory for env files (default: $PROJECT_DIR/envs)")
            p.add_argument("--project-dir", default=None,
                           help="project dir as the model sees it, for DATA_DIR/RESULT_DIR (default: $PROJECT_DIR or OUT/..)")
        p.set_defaults(func=func)

    p_run = sub.add_parser("run", help="run the whole sweep")
    p_run.add_argument("--local", action="store_true", help="on this machine, no containers, no accounts")
    p_run.add_argument("--jobs", "-j", type=int, default=1, help="configurations trained at once")
    p_run.add_argument("--run-id", default=None, help="name of the run directory (default: local-<time>-<random>)")
    p_run.set_defaults(func=_cmd_run)

    p_config = sub.add_parser("config", help="check mlops.toml")
    csub = p_config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    csub.add_parser("check", help="validate mlops.toml with the template's rules").set_defaults(func=_cmd_config_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .params import ParamsError
    from .local import StageFailed

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParamsError as exc:
        for error in exc.errors:
            print(f"{exc.source}: {error}", file=sys.stderr)
        return 2
    except (UsageError, config_mod.ConfigError) as exc:
        print(f"mlops: {exc}", file=sys.stderr)
        return 2
    except StageFailed as exc:
        print(f"mlops: {exc}", file=sys.stderr)
        return 1
