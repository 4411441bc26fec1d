"""`mlops params validate|expand`: the parameters file (room: mlops.params). Runs without mlops.toml too:
the params stage runs `mlops params expand` inside its image."""

from __future__ import annotations

import os
from pathlib import Path

from .. import params
from ..errors import UsageError
from . import OPTIONAL, Verbs


def register(verbs: Verbs) -> None:
    group = verbs.group("params", "validate or expand params/parameters.json")
    for name, handler, help in (
        ("validate", _validate, "check the file against its schema"),
        ("expand", _expand, "write one env file per configuration"),
    ):
        p = group.add(name, handler, help, settings=OPTIONAL)
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


def _validate(args, s) -> None:
    count = len(params.expand(params.validate(args.params, args.schema, args.max)))
    print(f"{args.params}: ok, {count} configurations")


def _expand(args, s) -> None:
    project = os.environ.get("PROJECT_DIR")
    out = args.out or (Path(project) / "envs" if project else None)
    if out is None:
        raise UsageError("--out: give the directory for the env files (or set PROJECT_DIR)")
    configurations = params.expand(params.validate(args.params, args.schema, args.max))
    print(f"writing {len(configurations)} env files to {out}", flush=True)  # a huge grid takes a while
    params.write_envs(configurations, Path(out), args.project_dir or project or str(Path(out).resolve().parent))
    print(f"wrote {len(configurations)} env files and index.json to {out}")
