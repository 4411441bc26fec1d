"""`mlops template check|answers`: this project's link to the template (room: mlops.template, via cruft)."""

from __future__ import annotations

import json

from .. import template
from . import Verbs


def register(verbs: Verbs) -> None:
    group = verbs.group("template", "this project's link to the template (cruft)")
    p = group.add("check", _check, "has the template moved on? (cruft check; a warning, not a failure)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 when out of date, 4 when it cannot tell (CI shows these as warnings)",
    )
    p = group.add("answers", _answers, "print the template answers from mlops.toml as JSON")
    p.add_argument("--replay", action="store_true", help='as a cookiecutter replay file ({"cookiecutter": ...})')


def _check(args, s) -> None:
    template.check(s.root, strict=args.strict)


def _answers(args, s) -> None:
    print(json.dumps(template.replay_file(s.root) if args.replay else template.answers(s.root), indent=2))
