"""`mlops run --local --config <id>` and `--set name=value`: ONE configuration in the foreground.

For debugging a configuration: it is taken from params/parameters.json by its id (or a unique start
of it; the first configuration when only --set is given), with each --set value over it (which makes
a new configuration, so a new id). It gets a run directory of its own (runs/<run id>/, mode
"local-one") holding that one env file; the data stage runs as in a sweep; then the model stage runs
attached to this terminal: its output appears as it is written, `breakpoint()` works, and Ctrl-C goes
to it. The run ends with the same summary as a sweep.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from . import children, local, local_env, params, rundir, runid, settings, stages
from .errors import BadInput


def pick(configurations: list[params.Configuration], config_id: str | None) -> params.Configuration:
    """The configuration whose id is or starts with `config_id` (the first one for None); BadInput otherwise."""
    if config_id is None:
        return configurations[0]
    found = [c for c in configurations if c.config_id.startswith(config_id.lower())]
    if len(found) == 1 and len(config_id) >= 4:
        return found[0]
    some = ", ".join(f"{c.config_id} ({_describe(c.parameters)})" for c in configurations[:3])
    more = f" and {len(configurations) - 3} more" if len(configurations) > 3 else ""
    why = f"{len(found)} configurations of params/parameters.json have an id starting with it"
    if not found:
        why = "no configuration of params/parameters.json has an id starting with it"
    elif len(config_id) < 4:
        why = "give at least 4 characters of the id"
    raise BadInput(
        f"--config {config_id}: {why}. Fix: one of {some}{more} "
        "(the end table of a sweep and runs/<run>/envs/index.json list them)"
    )


def apply_sets(configuration: params.Configuration, sets: list[str]) -> params.Configuration:
    """`configuration` with each NAME=VALUE of `sets` over it; a new id when anything changed.

    A value is read as JSON when that gives a number or a boolean and the parameter is not a
    string already (`--set alpha=0.5`, `--set shuffle=true`); otherwise it is the text as given.
    """
    values = dict(configuration.parameters)
    for item in sets:
        name, eq, text = item.partition("=")
        if not eq or name not in values:
            known = ", ".join(sorted(values))
            raise BadInput(f"--set {item}: use NAME=VALUE with a parameter of this configuration ({known})")
        value: object = text
        if not isinstance(values[name], str):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            value = parsed if isinstance(parsed, (bool, int, float)) else text
            if isinstance(values[name], bool) != isinstance(value, bool) or isinstance(value, str):
                kind, hint = ("a boolean", "true|false") if isinstance(values[name], bool) else ("a number", "number")
                was = params.format_value(values[name])
                raise BadInput(f"--set {item}: {name} is {kind} here ({name}={was}). Fix: --set {name}=<{hint}>")
        if not params.SAFE_VALUE.fullmatch(params.format_value(value)):
            raise BadInput(f"--set {item}: values are numbers, booleans or letters, digits and _.,:/+@%=- only")
        values[name] = value
    if values == configuration.parameters:
        return configuration
    return params.Configuration(params.config_id(values), values)


def run_one(
    root: Path | None = None,
    config_id: str | None = None,
    sets: list[str] | None = None,
    run_id: str | None = None,
    out: TextIO = sys.stderr,
) -> tuple[Path, int]:
    """Run one configuration in the foreground; returns (run dir, 1 if it did not complete well else 0)."""
    cfg = settings.load(root)
    doc = params.validate(cfg.root / "params" / "parameters.json")
    configuration = apply_sets(pick(params.expand(doc), config_id), list(sets or ()))
    run, run_id = local.new_run(cfg, run_id or runid.new("one"), mode="local-one")
    cid = configuration.config_id
    print(f"run {run_id}: {run}\n  configuration {cid}: {_describe(configuration.parameters)}", file=out)
    env = local_env.stage_env(cfg, run, run_id)
    context = {k: env[k] for k in params.PASSED_THROUGH if k in env}
    params.write_envs([configuration], run / "envs", str(run), context)  # what the params stage would write
    (run / "state" / "params.rc").write_text("0\n")
    with children.Stopper() as stopper:
        local.run_stage(cfg, "data", env, run, stopper, out)
    result_dir = run / "results" / cid
    result_dir.mkdir(parents=True)
    (result_dir / "log").write_text("(the output went to the terminal: mlops run --local --config)\n")
    print(f"  model  {cid} in the foreground (its output follows)", file=out, flush=True)
    started = time.time()
    rundir.write_task_state(run, cid, {"status": "running", "started": started})
    argv = stages.entrypoint(cfg.root, stages.BY_NAME["model"])
    rc = children.run_foreground(argv, cfg.root / "model", {**env, **params.read_env_file(run / "envs" / f"{cid}.env")})
    reason = local.end_one(run, cid, rc, started)
    print(f"  model  {cid} {'FAIL: ' + reason if reason else 'completed'} after {time.time() - started:.1f}s", file=out)
    bad = local.report(cfg, run, out)
    return run, 1 if bad or reason else 0


def _describe(parameters: dict) -> str:
    return " ".join(f"{k}={params.format_value(v)}" for k, v in parameters.items())[:160]
