"""The `mlops` command: the table of verbs (mlops.commands) over argparse.

Every CI job is one `mlops <verb>` line, and every verb also runs from a laptop. Before a verb runs,
mlops.toml is read and checked (mlops.settings.load, with `--cluster NAME` selected), so bad settings
stop it before any login. Exit codes (mlops.errors): 0 ok, 1 the work ran and something in it failed
(e.g. a configuration), 2 bad input or setup, 3/4 `template check --strict`.
"""

from __future__ import annotations

import argparse
import sys

from . import commands, errors, settings
from .errors import UsageError
from .ssh import resolver

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every verb in mlops.commands.MODULES; a parsed verb has `handler`, `settings`, `verb`."""
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.register_all(commands.Verbs(sub))
    return parser


def _settings(args: argparse.Namespace) -> settings.Settings | None:
    """mlops.toml read and checked for this verb (raises errors.Problems, exit 2), or None when the verb
    needs none (or may run without one and there is none)."""
    if args.settings == commands.NONE:
        return None
    if args.settings == commands.OPTIONAL:
        try:
            settings.find_root()
        except errors.BadInput:
            return None
    return settings.load(cluster=getattr(args, "cluster", None))


def main(argv: list[str] | None = None) -> int:
    """The `mlops` command: parse, check mlops.toml, run the verb; an MlopsError becomes its exit code."""
    resolver.scrub()  # before any name is resolved: no variable steers where the login goes (mlops.ssh.resolver)
    args = build_parser().parse_args(argv)
    try:
        args.handler(args, _settings(args))
    except errors.MlopsError as exc:
        print(f"mlops {args.verb}: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        problem = errors.missing_extra(exc)
        if problem is None:
            raise
        print(f"mlops {args.verb}: {problem}", file=sys.stderr)
        return problem.exit_code
    return 0
