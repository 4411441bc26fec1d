"""mlops.toml: its layout and every key that has no template question (type, default, rule, comment).

A key that stores a template answer takes its type, default and rule from its Option (questions.py,
rules.validate); the keys below have no question: their default and rule live here and nowhere else.

The layout (0.3):

    [project]          the project's answers
    [clusters]         default = NAME (optional; else the first block)
    [clusters.NAME]    one block per cluster: its answers (host, port, user, ...) + CLUSTER_KEYS
    [build] [wandb]    answers + SETTINGS_KEYS
    [notify] [collect] [images]   SETTINGS_KEYS

The 0.2 layout had one cluster: `[cluster]` + `[scheduler]` + `notify.partition`; LEGACY_0_2 says where
each of its keys lives in a cluster block now (mlops.settings reads both, `mlops config migrate` moves).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .questions import CLUSTER
from .values import PLAIN

# SLURM --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (sbatch(1), "-t, --time").
SLURM_TIME = re.compile(
    r"\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}|\d+-\d{1,2}:\d{1,2}|\d+-\d{1,2}:\d{1,2}:\d{1,2}"
)
# SLURM --mem: an integer with an optional unit suffix K, M, G or T (sbatch(1), "--mem").
SLURM_MEM = re.compile(r"[1-9][0-9]*[KMGT]?")
# An OCI image reference as `FROM` takes it: [registry[:port]/]path[:tag][@sha256:hex].
IMAGE_REF = re.compile(
    r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?"
)


Rule = Callable[[object], "tuple[str, str] | None"]  # value -> (what is wrong, the fix) or None


def _pattern(regex: re.Pattern, what: str, fix: str, empty_ok: bool = False) -> Rule:
    def rule(value: object) -> tuple[str, str] | None:
        if empty_ok and value == "":
            return None
        return None if regex.fullmatch(str(value)) else (f"{value!r} is not {what}", fix)

    return rule


def _at_least(low: int, unit: str = "") -> Rule:
    def rule(value: object) -> tuple[str, str] | None:
        return (
            None
            if isinstance(value, int) and value >= low
            else (f"{value!r} is below {low}", f"use a whole number of at least {low}{unit}")
        )

    return rule


@dataclass(frozen=True)
class Key:
    """One mlops.toml key with no template question: `section.name` (section "clusters.*" = in every
    cluster block), its type, default, comment and rule."""

    section: str
    name: str
    type: type
    default: object  # a str may name answers in braces: "python:{python_version}-slim"
    help: str
    rule: Rule | None = None

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    def default_for(self, answers: dict) -> object:
        """The default, with answers filled in; raises KeyError when a named answer is missing."""
        return self.default.format(**answers) if isinstance(self.default, str) else self.default


_TIME_RULE = _pattern(SLURM_TIME, "a SLURM time", "use minutes, HH:MM:SS or D-HH:MM:SS, e.g. '01:00:00'")
_MEM_RULE = _pattern(SLURM_MEM, "a SLURM memory size", "use a whole number with an optional K, M, G or T, e.g. '4G'")
_IMAGE_RULE = _pattern(IMAGE_REF, "an image reference", "use e.g. 'python:3.11-slim' or 'registry.example.org/py:3.11'")
_PARTITION_RULE = _pattern(PLAIN, "a SLURM partition", "use letters, digits, '_', '.', '-' (or leave it empty)", True)

# Per cluster block, after the block's answers. A table: section, key, type, default, comment, rule.
# fmt: off
CLUSTER_KEYS: tuple[Key, ...] = (
    Key(CLUSTER, "time", str, "01:00:00", "wall time per model task (SLURM --time)", _TIME_RULE),
    Key(CLUSTER, "cpus_per_task", int, 2, "CPU cores per model task (SLURM --cpus-per-task)", _at_least(1)),
    Key(CLUSTER, "mem", str, "4G", "memory per model task (SLURM --mem: a number with K, M, G or T)", _MEM_RULE),
    Key(CLUSTER, "parallel", int, 4, "at most this many model tasks at once (the %K of the array)", _at_least(1)),
    Key(CLUSTER, "notify_partition", str, "", "partition of the notification job (empty = partition)",
        _PARTITION_RULE),
    # The params and data jobs run once per run, not per task: small requests of their own, so that a
    # site without DefMemPerCPU does not give them a whole node (and no partition MaxTime is asked).
    Key(CLUSTER, "stage_time", str, "00:30:00", "wall time of the params job and of the data job (SLURM --time)",
        _TIME_RULE),
    Key(CLUSTER, "stage_mem", str, "2G", "memory of the params job and of the data job (SLURM --mem)", _MEM_RULE),
)

# The project-wide sections' keys without a question.
SETTINGS_KEYS: tuple[Key, ...] = (
    Key("build", "base_image", str, "python:{python_version}-slim", "FROM of all three images", _IMAGE_RULE),
    Key("notify", "timeout_s", int, 30, "seconds a notification may take", _at_least(1, " seconds")),
    Key("collect", "max_file_bytes", int, 268435456, "largest single file collect downloads (bytes)", _at_least(1)),
    Key("collect", "max_total_bytes", int, 2147483648, "largest total download of one collect (bytes)", _at_least(1)),
    Key("collect", "max_members", int, 100000, "most files in one results archive", _at_least(1)),
    Key("collect", "max_path_length", int, 1024, "longest path inside a results archive (characters)", _at_least(1)),
    Key("collect", "log_tail_bytes", int, 65536, "bytes of a failed task's log kept in the report", _at_least(0)),
    Key("collect", "log_tail_lines", int, 30, "lines of a failed task's log shown in the report", _at_least(0)),
    Key("images", "keep", int, 5, "commits whose images `mlops images prune` keeps on the cluster", _at_least(1)),
)
# fmt: on
CLUSTER_KEY = {k.name: k for k in CLUSTER_KEYS}

# mlops.toml's project-wide sections in file order ([clusters] comes after [project]).
SECTIONS = ("project", "build", "wandb", "notify", "collect", "images")
CLUSTERS = "clusters"  # the table of cluster blocks
DEFAULT = "default"  # its one key that is not a block: the default cluster's NAME

# 0.2 layout: (section, key) -> the key in the cluster block that replaced it.
_CLUSTER_0_2 = ("host", "port", "user", "jump_host", "workdir", "auth", "ssh_key", "runtime", "use_gpu")
_SCHEDULER_0_2 = ("partition", "account", "time", "cpus_per_task", "mem", "parallel")
LEGACY_0_2: dict[tuple[str, str], str] = {
    **{("cluster", k): k for k in _CLUSTER_0_2},
    ("scheduler", "kind"): "scheduler",
    **{("scheduler", k): k for k in _SCHEDULER_0_2},
    ("notify", "partition"): "notify_partition",
}
LEGACY_SECTIONS = ("cluster", "scheduler")  # the 0.2 sections that no longer exist
