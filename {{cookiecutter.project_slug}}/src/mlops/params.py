"""Parameter sweeps: validate `parameters.json`, expand it into configurations, write env files.

This is the only implementation of the expansion: `mlops params ...` on a laptop, the params image
in CI or on the cluster, and `mlops run --local` all call it.

File format (the JSON Schema in `params/parameters.schema.json` is the authority on structure):
    fixed           {name: value}            the same in every configuration
    grid            {name: [values]}         cartesian product over all grid entries
    zip             [{name: [values]}]       linked lists: the i-th values go together
    configurations  [{name: value}]          explicit extra configurations (merged over `fixed`)
    max_configurations                       cap on the expanded size (default 10000)

Env files carry values WITHOUT quotes, one NAME=value per line. Quoting cannot be portable: a
shell strips quotes, but podman/docker `--env-file` keep them literally. So string values are
restricted (by the schema) to characters that every reader takes the same way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import Problems

DEFAULT_CAP = 10_000
ID_LENGTH = 10
# Env names the pipeline itself sets; a parameter may not shadow them.
RESERVED = {"CONFIG_ID", "RUN_ID", "PROJECT_DIR", "DATA_DIR", "RESULT_DIR", "HOME", "PATH", "USER"}
RESERVED_PREFIXES = ("WANDB_", "MLOPS_", "SLURM_", "APPTAINER", "SINGULARITY", "CH_", "PODMAN", "CUDA_")
# Environment variables of the process running `expand` that are copied into every env file: the
# run context chosen by the orchestrator (never a secret: WANDB_API_KEY is deliberately absent).
PASSED_THROUGH = ("RUN_ID", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP", "WANDB_TAGS")
# Full-match only (re.fullmatch): `$` would also match before a final newline ("lr\n").
SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,:/+@%=-]*")
# The run directory's paths (PROJECT_DIR, DATA_DIR, RESULT_DIR, WANDB_DIR) may hold any printable text:
# in containers they are /project/..., and `mlops run --local` reads its env files itself
# (read_env_file), so a project under "My Projects/" or "Übungen/" works (issue 18.8). Cluster env
# files are checked by the stricter runenv.env_file_text.
PATH_VALUE = re.compile(r"[^\x00-\x1f\x7f]*")
PATH_NAMES = ("PROJECT_DIR", "DATA_DIR", "RESULT_DIR", "WANDB_DIR")
SAFE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# The same two rules as written in parameters.schema.json, to turn their errors into plain advice.
VALUE_PATTERN = "^[A-Za-z0-9_.,:/+@%=-]{0,256}$"
NAME_PATTERN = "^[a-z][a-z0-9_]{0,63}$"


class ParamsError(Problems):
    """Bad parameters file (exit 2); `errors` holds one line per problem, each naming its place in the file."""

    def __init__(self, source: str, errors: list[str]):
        super().__init__(source, errors)
        self.errors = self.problems


@dataclass(frozen=True)
class Configuration:
    config_id: str
    parameters: dict

    def env_name(self, name: str) -> str:
        return name.upper()


def default_schema_path(params_file: Path) -> Path:
    return params_file.with_name("parameters.schema.json")


def load(params_file: Path) -> dict:
    try:
        text = Path(params_file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(
            str(params_file), ["file not found (create it, e.g. from the template's params/parameters.json)"]
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError(
            str(params_file), [f"line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})"]
        ) from None


def _json_path(parts) -> str:
    path = "$"
    for p in parts:
        path += f"[{p}]" if isinstance(p, int) else f".{p}"
    return path


def schema_errors(doc: dict, schema: dict) -> list[str]:
    """JSON Schema 2020-12 errors, each as '<path in the file>: <message> (rule: <keyword>)'."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    lines = []
    for error in errors:
        message = error.message
        if error.validator == "pattern" and error.validator_value == VALUE_PATTERN:
            message = (
                f"{error.instance!r} has characters an env file cannot carry portably; "
                "use at most 256 of A-Z a-z 0-9 _ . , : / + @ % = -"
            )
        elif error.validator == "pattern" and error.validator_value == NAME_PATTERN:
            message = f"parameter name {error.instance!r} must be lowercase snake_case (e.g. 'learning_rate')"
        lines.append(f"{_json_path(error.absolute_path)}: {message} (rule: {error.validator})")
    return lines


def _names(doc: dict) -> list[tuple[str, str]]:
    """(name, where) for every name defined by fixed/grid/zip, in file order."""
    found = [(n, "$.fixed") for n in doc.get("fixed", {})]
    found += [(n, "$.grid") for n in doc.get("grid", {})]
    for i, group in enumerate(doc.get("zip", [])):
        found += [(n, f"$.zip[{i}]") for n in group]
    return found


def _string_values(doc: dict) -> list[tuple[str, str]]:
    """(where, value) for every string parameter value in the file."""
    found = [(f"$.fixed.{n}", v) for n, v in doc.get("fixed", {}).items()]
    found += [(f"$.grid.{n}[{i}]", v) for n, vs in doc.get("grid", {}).items() for i, v in enumerate(vs)]
    for g, group in enumerate(doc.get("zip", [])):
        found += [(f"$.zip[{g}].{n}[{i}]", v) for n, vs in group.items() for i, v in enumerate(vs)]
    for c, entry in enumerate(doc.get("configurations", [])):
        found += [(f"$.configurations[{c}].{n}", v) for n, v in entry.items()]
    return [(where, v) for where, v in found if isinstance(v, str)]


def semantic_errors(doc: dict) -> list[str]:
    """Rules a JSON Schema cannot say: unique names, reserved names, zip lengths, uniform configurations."""
    errors = []
    seen: dict[str, str] = {}
    for name, where in _names(doc):
        if name in seen:
            errors.append(
                f"{where}.{name}: also defined in {seen[name]} (rule: a name is defined once; "
                f"put it in one of fixed, grid or zip)"
            )
        seen.setdefault(name, where)
    all_names = list(seen) + [n for c in doc.get("configurations", []) for n in c]
    for name in dict.fromkeys(all_names):
        # The schema's `pattern` is applied with re.search, where `$` matches before a final newline.
        if not SAFE_NAME.fullmatch(name):
            errors.append(
                f"parameter {name!r}: not a valid name (rule: lowercase letters, digits and '_', "
                f"starting with a letter, at most 64 characters; no line breaks)"
            )
            continue
        env = name.upper()
        if env in RESERVED or env.startswith(RESERVED_PREFIXES):
            errors.append(
                f"parameter {name!r}: its env name {env} is reserved for the pipeline (rule: reserved names; rename it)"
            )
    for where, value in _string_values(doc):
        if len(value) > 256 or not SAFE_VALUE.fullmatch(value):
            errors.append(
                f"{where}: {value!r} has characters an env file cannot carry portably "
                f"(rule: letters, digits and _.,:/+@%=- only, at most 256; no line breaks)"
            )
    for i, group in enumerate(doc.get("zip", [])):
        lengths = {n: len(v) for n, v in group.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{n}={k}" for n, k in lengths.items())
            errors.append(f"$.zip[{i}]: linked lists differ in length ({detail}) (rule: zip lists have equal length)")
    expected = set(seen) if ("grid" in doc or "zip" in doc) else None
    for i, entry in enumerate(doc.get("configurations", [])):
        names = set(doc.get("fixed", {})) | set(entry)
        if expected is None:
            expected = names
        elif names != expected:
            missing, extra = sorted(expected - names), sorted(names - expected)
            parts = [f"missing {', '.join(missing)}"] if missing else []
            parts += [f"unexpected {', '.join(extra)}"] if extra else []
            detail = "; ".join(parts)
            errors.append(f"$.configurations[{i}]: {detail} (rule: every configuration sets the same parameters)")
    return errors


def count(doc: dict) -> int:
    """Number of configurations before de-duplication, computed without expanding."""
    grid_size = math.prod(len(v) for v in doc.get("grid", {}).values())
    zip_size = math.prod(len(next(iter(g.values()))) for g in doc.get("zip", []) if g)
    generated = grid_size * zip_size if ("grid" in doc or "zip" in doc) else 0
    explicit = len(doc.get("configurations", []))
    return generated + explicit if (generated or explicit) else 1


def validate(params_file: Path, schema_file: Path | None = None, cap: int | None = None) -> dict:
    """Load and check a parameters file; raise ParamsError listing every problem, else return it."""
    params_file = Path(params_file)
    doc = load(params_file)
    schema_file = Path(schema_file) if schema_file else default_schema_path(params_file)
    schema = load(schema_file)
    errors = schema_errors(doc, schema)
    if not errors:
        errors = semantic_errors(doc)
    if not errors:
        limit = cap or doc.get("max_configurations", DEFAULT_CAP)
        n = count(doc)
        if n > limit:
            errors.append(
                f"$: expands to {n:,} configurations, above the cap of {limit:,} "
                f"(rule: max_configurations; shrink the grid or raise max_configurations)"
            )
    if errors:
        raise ParamsError(str(params_file), errors)
    return doc


def canonical(parameters: dict) -> str:
    return json.dumps(parameters, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_id(parameters: dict) -> str:
    """Stable id of one configuration: same content, same id, across runs and commits."""
    return hashlib.sha256(canonical(parameters).encode()).hexdigest()[:ID_LENGTH]


def expand(doc: dict) -> list[Configuration]:
    """All configurations in a deterministic order: grid x zip first, then explicit ones; duplicates dropped."""
    fixed = dict(doc.get("fixed", {}))
    axes: list[list[dict]] = [[{name: v} for v in values] for name, values in doc.get("grid", {}).items()]
    axes += [[dict(zip(group, row)) for row in zip(*group.values())] for group in doc.get("zip", [])]
    combos: list[dict] = []
    if axes:
        for picks in itertools.product(*axes):
            combo = dict(fixed)
            for pick in picks:
                combo.update(pick)
            combos.append(combo)
    combos += [{**fixed, **entry} for entry in doc.get("configurations", [])]
    if not combos:
        combos = [fixed]
    configurations: dict[str, Configuration] = {}
    for combo in combos:
        cid = config_id(combo)
        existing = configurations.get(cid)
        if existing and existing.parameters != combo:  # pragma: no cover - 40-bit collision
            raise ParamsError("parameters", [f"config id collision for {cid}; please report this"])
        configurations.setdefault(cid, Configuration(cid, combo))
    return list(configurations.values())


def format_value(value: object) -> str:
    """A parameter value as its env-file text: true/false for booleans, JSON for numbers, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def env_lines(configuration: Configuration, project_dir: str, context: dict[str, str]) -> list[str]:
    cid = configuration.config_id
    result_dir = f"{project_dir}/results/{cid}"
    env = {
        "CONFIG_ID": cid,
        "PROJECT_DIR": project_dir,
        "DATA_DIR": f"{project_dir}/data",
        "RESULT_DIR": result_dir,
        **context,
        # W&B reads these itself, so the research code needs no tracking boilerplate. The run id is
        # fixed per run and configuration: syncing an offline run twice updates it, never duplicates it.
        "WANDB_NAME": cid,
        "WANDB_RUN_ID": f"{context.get('RUN_ID', 'run')}-{cid}",
        "WANDB_DIR": result_dir,
    }
    env.update({name.upper(): format_value(v) for name, v in configuration.parameters.items()})
    for name, value in env.items():
        rule = PATH_VALUE if name in PATH_NAMES else SAFE_VALUE
        if not ENV_NAME.fullmatch(name) or not rule.fullmatch(value):
            raise ParamsError("env", [f"{name}={value!r}: characters an env file cannot carry portably"])
    return [f"{name}={value}" for name, value in env.items()]


def write_envs(
    configurations: list[Configuration], out_dir: Path, project_dir: str, context: dict[str, str] | None = None
) -> Path:
    """Write `<id>.env` (mode 0600) per configuration plus `index.json` and `ids.txt` into out_dir,
    replacing what it held; returns out_dir.

    out_dir may be a mount point (on the cluster the params container sees only envs/), so nothing
    is written beside it: every line is checked first (ParamsError), the files are written into a
    staging directory inside out_dir, then the old entries go and the new ones are renamed in,
    ids.txt last. A failure leaves the old contents as they were.
    """
    out_dir = Path(out_dir)
    if context is None:
        context = {k: os.environ[k] for k in PASSED_THROUGH if os.environ.get(k)}
    lines = [env_lines(configuration, project_dir, context) for configuration in configurations]
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        index = []
        for i, (configuration, env) in enumerate(zip(configurations, lines)):
            fd = os.open(staging / f"{configuration.config_id}.env", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("\n".join(env) + "\n")
            index.append({"index": i, "config_id": configuration.config_id, "parameters": configuration.parameters})
        (staging / "index.json").write_text(
            json.dumps({"run_id": context.get("RUN_ID", ""), "count": len(index), "configurations": index}, indent=1)
        )
        # The same mapping for shell readers (a SLURM array task): line N+1 is the id of index N.
        (staging / "ids.txt").write_text("".join(f"{c.config_id}\n" for c in configurations))
        for old in out_dir.iterdir():
            if old == staging:
                continue
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        last = {"index.json": 1, "ids.txt": 2}
        for path in sorted(staging.iterdir(), key=lambda p: (last.get(p.name, 0), p.name)):
            os.replace(path, out_dir / path.name)
        staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def read_index(envs_dir: Path) -> list[dict]:
    return json.loads((Path(envs_dir) / "index.json").read_text())["configurations"]


def read_env_file(path: Path) -> dict[str, str]:
    """Parse an env file the way every runtime does: NAME=value, no quotes, no comments."""
    env = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            name, _, value = line.partition("=")
            env[name] = value
    return env


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
