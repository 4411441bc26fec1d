"""The project's settings: `mlops.toml` read once, typed, validated, frozen, with one cluster selected.

Every key of the file is defined in `mlops.options` (a template answer's key by its Option, the others
in its key tables, each with its type, default and rule); mlops.settings_parse checks the data and
names every bad key (`clusters.NAME.key`) with its fix; this module reads the file and builds the
typed view. Every `mlops` command calls `load()` first, so bad settings stop it before any login.

    s = settings.load()              # nearest mlops.toml at or above the working directory
    s = settings.load(cluster="uni") # another cluster than the default (BadInput names the known ones)
    s.cluster.name, s.cluster.port   # "uni", 22
    s.scheduler.kind                 # "slurm" | "none"
    s.clusters, s.default_cluster    # ("uni", "bw"), "uni"
    s.select("bw")                   # the same settings with another cluster selected
    s.cluster_root                   # "<workdir>/<slug>", where images and runs live on that cluster
    s.answers()                      # the template answers (the first cluster block)
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import errors, options
from .settings_parse import FILENAME, LAYOUT, LAYOUT_0_2, Parsed, parse

__all__ = [
    "FILENAME",
    "LAYOUT",
    "LAYOUT_0_2",
    "SKELETON_BLOCK",
    "Settings",
    "fill_toml",
    "find_root",
    "from_data",
    "load",
    "read_data",
]


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
    name: str  # the NAME of [clusters.NAME]: options.CLUSTER_NAME
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
    kind: str  # "slurm" | "none" (the block's key `scheduler`)
    partition: str  # "" = the cluster's default
    account: str  # "" = the user's default
    time: str  # SLURM --time format
    cpus_per_task: int
    mem: str  # SLURM --mem format, e.g. "4G"
    parallel: int  # the %K of the model job array
    notify_partition: str  # "" = partition
    stage_time: str  # SLURM --time of the params and data jobs
    stage_mem: str  # SLURM --mem of the params and data jobs


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


# The project-wide sections (options.SECTIONS) and their types.
SECTION_TYPES: dict[str, type] = {
    "project": Project, "build": Build, "wandb": Wandb, "notify": Notify, "collect": Collect, "images": Images,
}  # fmt: skip
# A cluster block's key -> (the dataclass, its field): `scheduler = "slurm"` is Scheduler.kind.
BLOCK_FIELDS: dict[str, tuple[type, str]] = {
    **{f.name: (Cluster, f.name) for f in dataclasses.fields(Cluster) if f.name != "name"},
    "scheduler": (Scheduler, "kind"),
    **{f.name: (Scheduler, f.name) for f in dataclasses.fields(Scheduler) if f.name != "kind"},
}


@dataclass(frozen=True)
class Settings:
    root: Path  # the project directory (where mlops.toml lives)
    project: Project
    cluster: Cluster  # the selected cluster (load(cluster=...), else the default)
    scheduler: Scheduler  # ... and its scheduler
    build: Build
    wandb: Wandb
    notify: Notify
    collect: Collect
    images: Images
    cluster_blocks: tuple[tuple[Cluster, Scheduler], ...]  # every cluster, in file order
    default_cluster: str  # `[clusters] default`, else the first block's name
    layout: str = LAYOUT  # LAYOUT_0_2 for a file still in the 0.2 layout (`mlops config migrate`)

    @property
    def clusters(self) -> tuple[str, ...]:
        """The cluster names in file order."""
        return tuple(c.name for c, _ in self.cluster_blocks)

    def select(self, name: str | None) -> Settings:
        """The same settings with cluster `name` selected (None: the default). BadInput names the known ones."""
        name = self.default_cluster if name is None else name
        for cluster, scheduler in self.cluster_blocks:
            if cluster.name == name:
                return dataclasses.replace(self, cluster=cluster, scheduler=scheduler)
        raise errors.BadInput(
            f"cluster {name!r}: {FILENAME} has no [clusters.{name}] block. Fix: use one of: "
            f"{', '.join(self.clusters)} (or add a [clusters.{name}] block: README 'Several clusters')"
        )

    @property
    def cluster_root(self) -> str:
        """`<workdir>/<slug>` on the selected cluster: images and run directories live below it."""
        return f"{self.cluster.workdir.rstrip('/')}/{self.project.slug}"

    def answers(self, cluster: str | None = None) -> dict[str, str]:
        """The settings as template answers (option name -> str), as cookiecutter and cruft take them.

        cluster None: the first block, the one the template asked for; a name: that block's answers.
        """
        name = cluster if cluster is not None else self.clusters[0]
        chosen = self.select(name)
        out = {}
        for option in options.OPTIONS:
            if option.key == options.CLUSTER:
                value: object = chosen.cluster.name
            elif option.in_cluster:
                cls, attr = BLOCK_FIELDS[option.toml_key]
                value = getattr(chosen.cluster if cls is Cluster else chosen.scheduler, attr)
            else:
                section, key = option.key.split(".")
                value = getattr(getattr(self, section), key)
            out[option.name] = options.to_answer(value)
        return out


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: the working directory) holding mlops.toml.

    Raises errors.BadInput when there is none.
    """
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / FILENAME).is_file():
            return candidate
    raise errors.BadInput(f"no {FILENAME} found in {here} or above. Fix: run mlops inside a rendered project")


# What `git merge` / `git apply -3` leave in a file with a conflict (not spelled out here: a test looks for them)
_CONFLICT_MARKERS = ("<" * 7 + " ", ">" * 7 + " ")


def read_data(path: Path) -> dict:
    """mlops.toml parsed by tomllib; errors.Problems for a syntax error (naming the line), and for the
    conflict markers a `cruft update` or `git merge` leaves (naming the way out)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        return tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise errors.Problems(FILENAME, [f"not UTF-8 text ({exc}). Fix: save it as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        markers = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith(_CONFLICT_MARKERS)]
        if markers:
            raise errors.Problems(FILENAME, [
                f"line {markers[0]}: a merge conflict (from `cruft update` or `git merge`) is not resolved. Fix: keep "
                "one side of each conflict and remove the markers; after updating from a 0.2 template, "
                "`git checkout --ours mlops.toml && mlops config migrate` keeps your file and moves it to the "
                f"{LAYOUT} layout"]) from None  # fmt: skip
        raise errors.Problems(FILENAME, [f"not valid TOML ({exc}). Fix: correct the syntax at that line"]) from None


def load(root: Path | None = None, cluster: str | None = None) -> Settings:
    """Read, type and validate `<root or the nearest project>/mlops.toml`, with `cluster` selected
    (None: the default cluster).

    Raises errors.BadInput (no file, or no such cluster) or errors.Problems (a TOML syntax error, or one
    line per bad key).
    """
    root = find_root(root)
    return from_data(read_data(root / FILENAME), root, cluster)


def from_data(data: dict, root: Path, cluster: str | None = None) -> Settings:
    """Settings from a parsed mlops.toml; raises errors.Problems listing every bad key."""
    return build(parse(data), root).select(cluster)


def build(parsed: Parsed, root: Path) -> Settings:
    """The typed Settings of checked values (the default cluster selected)."""
    blocks = []
    for name, values in parsed.blocks.items():
        parts: dict[type, dict[str, Any]] = {Cluster: {"name": name}, Scheduler: {}}
        for key, value in values.items():
            cls, attr = BLOCK_FIELDS[key]
            parts[cls][attr] = value
        blocks.append((Cluster(**parts[Cluster]), Scheduler(**parts[Scheduler])))
    sections = {name: cls(**parsed.sections[name]) for name, cls in SECTION_TYPES.items()}
    first = next(b for b in blocks if b[0].name == parsed.default)
    return Settings(root=root, **sections, cluster=first[0], scheduler=first[1], cluster_blocks=tuple(blocks),
                    default_cluster=parsed.default, layout=parsed.layout)  # fmt: skip


SKELETON_BLOCK = "NAME"  # the template skeleton's one cluster block, renamed to the answer cluster_name


def fill_toml(skeleton: str, answers: dict) -> str:
    """The text of mlops.toml for these (valid) answers: `skeleton` (the template's file, with its
    comments) with every key set from the answers or its default, the cluster block named by
    cluster_name. Raises errors.Problems if the result would not load back as the same answers."""
    import tomlkit

    doc = tomlkit.parse(skeleton)
    clusters: Any = doc[options.CLUSTERS]
    if SKELETON_BLOCK not in clusters:
        raise errors.BadInput(f"the skeleton mlops.toml has no [clusters.{SKELETON_BLOCK}] block; please report this")
    name = str(answers["cluster_name"])
    block = clusters[SKELETON_BLOCK]
    clusters.remove(SKELETON_BLOCK)
    clusters.add(name, block)
    clusters[options.DEFAULT] = name
    for option in options.OPTIONS:
        if option.key == options.CLUSTER:
            continue
        value = options.from_answer(option, str(answers[option.name]))
        table = block if option.in_cluster else _table(doc, option.key.split(".")[0])
        _set(table, option.toml_key, value, option.help)
    for k in options.CLUSTER_KEYS:
        _set(block, k.name, k.default_for(answers), k.help)
    for k in options.SETTINGS_KEYS:
        _set(_table(doc, k.section), k.name, k.default_for(answers), k.help)
    text = tomlkit.dumps(doc)
    back = from_data(tomllib.loads(text), Path("."))
    if back.answers() != {o.name: str(answers[o.name]) for o in options.OPTIONS}:
        raise errors.Problems(FILENAME, ["the answers do not survive a round trip through TOML; report this"])
    return text


def _table(doc: Any, section: str) -> Any:
    import tomlkit

    if section not in doc:
        doc.add(section, tomlkit.table())
    return doc[section]


def _set(table: Any, key: str, value: Any, help: str) -> None:
    import tomlkit

    if key in table:
        table[key] = value  # keeps the key's comment in the skeleton
    else:
        item = tomlkit.item(value)
        item.comment(help)
        table.add(key, item)
