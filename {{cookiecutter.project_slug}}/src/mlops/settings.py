"""The project's settings: `mlops.toml` read once, typed, validated, frozen.

Every key of the file is defined in `mlops.options` (a template answer's key by its Option, the
others in SETTINGS_KEYS, each with its type, default and rule): this module only reads and checks.
`load()` raises `errors.Problems("mlops.toml", [...])` naming every bad `section.key`, the problem
and the fix, so a command stops before any login or upload. Every `mlops` command calls it first.

    s = settings.load()            # nearest mlops.toml at or above the working directory
    s.cluster.port                 # int
    s.cluster_root                 # "<workdir>/<slug>", where images and runs live on the cluster
    s.answers()                    # the template answers, for mlops.options.validate and cruft
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import errors, options

FILENAME = "mlops.toml"


@dataclass(frozen=True)
class Project:
    name: str
    slug: str
    description: str
    author_name: str
    author_email: str
    python_version: str
    ml_framework: str
    gitlab_host: str


@dataclass(frozen=True)
class Cluster:
    host: str
    port: int
    user: str
    jump_host: str  # OpenSSH ProxyJump syntax [user@]host[:port]; "" = connect directly
    workdir: str  # absolute path on the cluster
    auth: str  # one of options.AUTH_METHODS
    ssh_key: str  # a PATH on this machine (never the key)
    runtime: str
    use_gpu: bool


@dataclass(frozen=True)
class Scheduler:
    kind: str  # "slurm" | "none"
    partition: str  # "" = the cluster's default
    account: str  # "" = the user's default
    time: str  # SLURM --time format
    cpus_per_task: int
    mem: str  # SLURM --mem format, e.g. "4G"
    parallel: int  # the %K of the model job array


@dataclass(frozen=True)
class Build:
    builder: str
    base_image: str


@dataclass(frozen=True)
class Wandb:
    mode: str  # "offline" | "online" | "disabled"
    entity: str
    project: str


@dataclass(frozen=True)
class Notify:
    partition: str
    timeout_s: int


@dataclass(frozen=True)
class Collect:
    max_file_bytes: int
    max_total_bytes: int
    max_members: int
    max_path_length: int
    log_tail_bytes: int
    log_tail_lines: int


@dataclass(frozen=True)
class Images:
    keep: int


SECTION_TYPES: dict[str, type] = {
    "project": Project, "cluster": Cluster, "scheduler": Scheduler, "build": Build, "wandb": Wandb,
    "notify": Notify, "collect": Collect, "images": Images,
}  # fmt: skip


@dataclass(frozen=True)
class Settings:
    root: Path  # the project directory (where mlops.toml lives)
    project: Project
    cluster: Cluster
    scheduler: Scheduler
    build: Build
    wandb: Wandb
    notify: Notify
    collect: Collect
    images: Images

    @property
    def cluster_root(self) -> str:
        """`<workdir>/<slug>` on the cluster: images and run directories live below it."""
        return f"{self.cluster.workdir.rstrip('/')}/{self.project.slug}"

    def answers(self) -> dict[str, str]:
        """The settings as template answers (option name -> str), as cookiecutter and cruft take them."""
        out = {}
        for option in options.OPTIONS:
            section, key = option.key.split(".")
            out[option.name] = _as_answer(getattr(getattr(self, section), key))
        return out


def _as_answer(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: the working directory) holding mlops.toml.

    Raises errors.BadInput when there is none.
    """
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / FILENAME).is_file():
            return candidate
    raise errors.BadInput(f"no {FILENAME} found in {here} or above. Fix: run mlops inside a rendered project")


def load(root: Path | None = None) -> Settings:
    """Read, type and validate `<root or the nearest project>/mlops.toml`.

    Raises errors.BadInput (no file) or errors.Problems (a TOML syntax error, or one line per bad key).
    """
    root = find_root(root)
    path = root / FILENAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise errors.Problems(FILENAME, [f"not valid TOML ({exc}). Fix: correct the syntax at that line"]) from None
    return from_data(data, root)


def from_data(data: dict, root: Path) -> Settings:
    """Settings from a parsed mlops.toml; raises errors.Problems listing every bad key."""
    problems: list[str] = []
    values: dict[str, dict[str, object]] = {section: {} for section in options.SECTIONS}
    label: dict[str, str] = {}  # answer name -> "section.key (answer)"

    for section in sorted(set(data) - set(options.SECTIONS)):
        problems.append(
            f"[{section}]: is not a section of this template. Fix: remove it or check the spelling "
            f"(sections: {', '.join(options.SECTIONS)})"
        )
    known = {o.key for o in options.OPTIONS} | {k.dotted for k in options.SETTINGS_KEYS}
    for section in options.SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            problems.append(f"{section}: is not a table. Fix: write it as a [{section}] section")
            data = {**data, section: {}}
            continue
        for key in sorted(set(table) - {k.split(".")[1] for k in known if k.startswith(section + ".")}):
            problems.append(f"{section}.{key}: is not a setting of this template. Fix: remove it or check the spelling")

    answers: dict[str, str] = {}
    for option in options.OPTIONS:
        section, key = option.key.split(".")
        label[option.name] = f"{option.key} ({option.name})"
        if key not in data.get(section, {}):
            problems.append(
                f"{option.key}: is missing. Fix: add `{key} = ...` under [{section}] "
                f"(the template answer {option.name})"
            )
            continue
        value, problem = _typed(data[section][key], options.TYPES.get(option.name, str))
        if problem:
            problems.append(f"{label[option.name]}: {problem}")
            continue
        values[section][key] = value
        answers[option.name] = _as_answer(value)
    if len(answers) == len(options.OPTIONS):
        for p in options.validate(answers):
            problems.append(f"{label.get(p.field, p.field)}: {p.message}. Fix: {p.fix}.")

    for k in options.SETTINGS_KEYS:
        raw = data.get(k.section, {}).get(k.name, None)
        if raw is None:
            try:
                raw = k.default_for(answers)
            except KeyError:  # derived from an answer that is already reported as missing or bad
                continue
        value, problem = _typed(raw, k.type)
        if problem is None and isinstance(value, str) and options.control_characters(value):
            problem = f"{value[:40]!r} contains a control character. Fix: write it on one line"
        if problem is None and k.rule is not None:
            found = k.rule(value)
            problem = f"{found[0]}. Fix: {found[1]}." if found else None
        if problem:
            problems.append(f"{k.dotted}: {problem}")
            continue
        values[k.section][k.name] = value

    if problems:
        raise errors.Problems(FILENAME, problems)
    sections = {name: cls(**values[name]) for name, cls in SECTION_TYPES.items()}
    return Settings(root=root, **sections)


def _typed(value: object, kind: type) -> tuple[object, str | None]:
    """(value as `kind`, None) or (None, problem). Accepts what older files hold: port "22", use_gpu "yes"."""
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        if value in ("yes", "no"):
            return value == "yes", None
        return None, f"{value!r} is not true or false. Fix: write true or false (without quotes)"
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value), None
        return None, f"{value!r} is not a whole number. Fix: write a number without quotes, e.g. 22"
    if isinstance(value, str):
        return value, None
    return None, f"{value!r} is not text. Fix: write it in double quotes"


def fill_toml(skeleton: str, answers: dict) -> str:
    """The text of mlops.toml for these answers: `skeleton` (the template's file, with its comments)
    with every key set from the answers or its default, serialized by tomlkit (never by string
    templates, so any answer round-trips). Raises errors.Problems if the result would not load back."""
    import tomlkit

    doc = tomlkit.parse(skeleton)
    for option in options.OPTIONS:
        section, key = option.key.split(".")
        kind = options.TYPES.get(option.name, str)
        raw = str(answers[option.name])
        value: object = raw == "yes" if kind is bool else int(raw) if kind is int else raw
        _set(doc, section, key, value, option.help)
    for k in options.SETTINGS_KEYS:
        _set(doc, k.section, k.name, k.default_for(answers), k.help)
    text = tomlkit.dumps(doc)
    back = from_data(tomllib.loads(text), Path("."))
    if back.answers() != {o.name: str(answers[o.name]) for o in options.OPTIONS}:
        raise errors.Problems(FILENAME, ["the answers do not survive a round trip through TOML; please report this"])
    return text


def _set(doc: Any, section: str, key: str, value: Any, help: str) -> None:
    import tomlkit

    if section not in doc:
        doc.add(section, tomlkit.table())
    table = doc[section]
    if key in table:
        table[key] = value  # keeps the key's comment in the skeleton
    else:
        item = tomlkit.item(value)
        item.comment(help)
        table.add(key, item)
