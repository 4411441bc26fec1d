"""The verbs of `mlops`, as a table: one module per verb group, each with its parsers and handlers side by side.

mlops.cli builds the parser from MODULES (in this order, which is the order of `mlops --help`) and runs
the handler of the verb given. A handler is `handler(args, s) -> None`: ONE call into the room that
does the work, `s` the Settings with the chosen cluster selected (or None for a verb that reads no
mlops.toml). Success returns; every failure is an mlops.errors.MlopsError (its exit code is mlops').

Adding a verb, in the room's own command module (or a new module added to MODULES):

    def register(verbs: Verbs) -> None:
        p = verbs.add("runs", _runs, "list the runs collected here")          # `mlops runs`
        p.add_argument("--out", type=Path, default=Path("results"))
        p = verbs.group("ci", "the pipeline files").add("write", _ci_write,  # `mlops ci write`
                                                         "...", cluster=True)

    def _runs(args, s):
        results.runs.list_runs(s, args.out)

`cluster=True` adds `--cluster NAME` (the settings arrive with that cluster selected); `settings=OPTIONAL`
lets the verb run where there is no mlops.toml (s is then None), `settings=NONE` never reads it.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

NEEDED, OPTIONAL, NONE = "needed", "optional", "none"  # what a verb needs of mlops.toml
MODULES = ("params", "run", "images", "cluster", "results", "config", "ci", "credentials", "variables", "template")

Handler = Callable[[argparse.Namespace, Any], None]
RUN_ID_HELP = "run id (default: p$CI_PIPELINE_ID in CI, else the last run submitted from here to this cluster)"


class Verbs:
    """A level of subcommands: `add` a verb with its handler, `group` a level below (get or create)."""

    def __init__(self, subparsers: Any, path: tuple[str, ...] = ()):
        self._sub = subparsers
        self._path = path
        self._groups: dict[str, Verbs] = {}

    def add(
        self, name: str, handler: Handler, help: str, settings: str = NEEDED, cluster: bool = False
    ) -> argparse.ArgumentParser:
        """A verb; its parser (add the verb's own arguments to it)."""
        parser = self._sub.add_parser(name, help=help, description=help)
        if cluster:
            parser.add_argument(
                "--cluster",
                metavar="NAME",
                default=None,
                help="the [clusters.NAME] block of mlops.toml to act on (default: [clusters] default, else the first)",
            )
        parser.set_defaults(handler=handler, settings=settings, verb=" ".join((*self._path, name)))
        return parser

    def group(self, name: str, help: str = "") -> Verbs:
        """The verbs below `name` (`mlops images prune`): created on first use, shared by every module."""
        if name not in self._groups:
            parser = self._sub.add_parser(name, help=help, description=help)
            sub = parser.add_subparsers(dest=f"{'_'.join((*self._path, name))}_action", required=True, metavar="ACTION")
            self._groups[name] = Verbs(sub, (*self._path, name))
        return self._groups[name]


def add_run_id(parser: argparse.ArgumentParser) -> None:
    """`--run-id` with its default explained (mlops.runid.resolve)."""
    parser.add_argument("--run-id", default=None, help=RUN_ID_HELP)


def register_all(verbs: Verbs) -> None:
    """Every module of MODULES registers its verbs."""
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}").register(verbs)
