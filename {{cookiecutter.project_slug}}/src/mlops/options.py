"""The template's options: the one definition of every answer a user gives.

`cookiecutter.json` and the options table in the template README are generated from OPTIONS
(`python scripts/sync_options.py` in the template repo; a test fails when they drift). The
pre/post-generation hooks validate answers with `validate()`, and `mlops config check` runs the
same rules on `mlops.toml` later, so a rule lives here and nowhere else.

No option is ever a secret: every answer ends up in plain text in the cookiecutter replay file and
in `.cruft.json`. Secrets are read by `mlops.credentials` from the environment or a prompt.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    """One template question. `key` is the mlops.toml key ("section.key") its answer is stored under."""

    name: str
    default: object  # a string (maybe a Jinja expression over earlier answers) or a list of choices
    prompt: str
    key: str  # the mlops.toml key ("section.key") the answer is stored under
    help: str

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.default) if isinstance(self.default, list) else ()


# cluster.auth: how `mlops` logs in (mlops.ssh implements each; the CI variables follow from it).
AUTH_METHODS = ("totp", "totp+password", "command-key", "key")
TOTP_METHODS = ("totp", "totp+password")  # the methods that answer a one-time code

# A table, one option per entry, in the order cookiecutter asks them.
# fmt: off
OPTIONS: tuple[Option, ...] = (
    Option("project_name", "Forecasting Experiments", "Project name", "project.name",
           "Human-readable name, used in the README and the W&B project default."),
    Option("project_slug", "{{ cookiecutter.project_name | slugify(max_length=50) or '-' }}",
           "Project slug (folder, image and cluster directory name)", "project.slug",
           "Lowercase letters, digits and single hyphens; derived from the name."),
    Option("description", "Time-series forecasting experiments run on the group's HPC cluster.",
           "One-line description", "project.description",
           "Goes into the README and the package metadata."),
    Option("author_name", "Jane Doe", "Your name", "project.author_name",
           "Package and image metadata."),
    Option("author_email", "jane.doe@example.org", "Your e-mail", "project.author_email",
           "Package metadata."),
    Option("python_version", ["3.11", "3.12", "3.13"], "Python version of the images", "project.python_version",
           "Selects the `python:<version>-slim` base image of all three images."),
    Option("ml_framework", ["scikit-learn", "pytorch"], "ML framework of the example model", "project.ml_framework",
           "The example forecasting model in `model/train.py` (pytorch uses CPU torch unless use_gpu)."),
    Option("gitlab_host", "gitlab.example.com", "GitLab host (no https://)", "project.gitlab_host",
           "Host name of your GitLab instance, optionally with :port."),
    Option("hpc_host", "hpc.example.org", "HPC login node host name", "cluster.host",
           "The cluster's SSH login node, host name only."),
    Option("hpc_port", "22", "HPC SSH port", "cluster.port",
           "TCP port of the login node's SSH server."),
    Option("hpc_user", "jdoe", "Your user name on the cluster", "cluster.user",
           "The account that runs the jobs."),
    Option("hpc_jump_host", "", "Jump host ([user@]host[:port], empty = none)", "cluster.jump_host",
           "For clusters reachable only from a university network (OpenSSH ProxyJump syntax)."),
    Option("hpc_workdir", "/home/{{ cookiecutter.hpc_user }}/mlops",
           "Absolute work directory on the cluster", "cluster.workdir",
           "Images and run directories go below `<workdir>/<slug>/` (a workspace path is a good choice)."),
    Option("hpc_auth", list(AUTH_METHODS), "How CI logs in to the cluster", "cluster.auth",
           "totp: SSH key + one-time code; totp+password: SSH key, one-time code and the service password (bwHPC); "
           "command-key: a restricted automation key; key: plain SSH key."),
    Option("hpc_ssh_key", "~/.ssh/id_ed25519",
           "Path of your SSH private key for the cluster (a path, not the key)", "cluster.ssh_key",
           "Checked locally by `mlops check-credentials` (exists, mode 0600, matches its .pub); the key itself never"
           " enters the project: CI gets it from the HPC_SSH_PRIVATE_KEY file variable."),
    Option("scheduler", ["slurm", "none"], "Batch scheduler on the cluster", "scheduler.kind",
           "slurm: job arrays with afterok dependencies; none: run on the host with bounded parallelism."),
    Option("slurm_partition", "", "SLURM partition (empty = cluster default)", "scheduler.partition",
           "`--partition` of every job."),
    Option("slurm_account", "", "SLURM account (empty = your default)", "scheduler.account",
           "`--account` of every job."),
    Option("container_runtime", ["apptainer", "singularity", "podman", "charliecloud"],
           "Container runtime on the cluster", "cluster.runtime",
           "How the cluster runs the images (converted once per digest)."),
    Option("image_builder", ["buildah", "buildkit", "kaniko", "img"], "Image builder in CI", "build.builder",
           "Daemonless, unprivileged builders. img is unmaintained since 2020; kept for groups using it."),
    Option("wandb_mode", ["offline", "online", "disabled"], "Weights & Biases mode on compute nodes", "wandb.mode",
           "offline: runs are written next to the results and synced from the login node by `mlops collect`."),
    Option("wandb_entity", "", "W&B entity (team or user, empty = your default)", "wandb.entity",
           "Where runs are synced."),
    Option("wandb_project", "{{ cookiecutter.project_slug }}", "W&B project", "wandb.project",
           "Project the runs are grouped in."),
    Option("use_gpu", ["no", "yes"], "Train on GPUs", "cluster.use_gpu",
           "Requests `--gres=gpu:1` and the runtime's GPU flag."),
)
# fmt: on

BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Problem:
    """One rejected answer: which field, what is wrong, how to fix it."""

    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}. Fix: {self.fix}."


# Full-match patterns only (re.fullmatch, or \A...\Z): `$` also matches before a final newline.
_SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_PLAIN = re.compile(r"[A-Za-z0-9_.-]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_WORKDIR = re.compile(r"/[A-Za-z0-9._/+-]*")
# SLURM --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (sbatch(1), "-t, --time").
_SLURM_TIME = re.compile(
    r"\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}|\d+-\d{1,2}:\d{1,2}|\d+-\d{1,2}:\d{1,2}:\d{1,2}"
)
# SLURM --mem: an integer with an optional unit suffix K, M, G or T (sbatch(1), "--mem").
_SLURM_MEM = re.compile(r"[1-9][0-9]*[KMGT]?")
# An OCI image reference as `FROM` takes it: [registry[:port]/]path[:tag][@sha256:hex].
_IMAGE_REF = re.compile(
    r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?"
)


def control_characters(value: str) -> bool:
    """True when `value` holds a control character (a newline, tab, NUL, ESC, DEL ...): such a value
    must never reach a shell line, a file name or an #SBATCH directive."""
    return any(unicodedata.category(c) == "Cc" for c in value)


def derived(name: str, answers: dict) -> str | None:
    """The value cookiecutter derives for `name` from earlier answers (the Jinja default in OPTIONS), or None.

    project_slug uses cookiecutter's `slugify` filter (python-slugify, shipped with cookiecutter).
    """
    if name == "project_slug":
        try:
            from slugify import slugify
        except ImportError:  # pragma: no cover - only messages need it; cookiecutter always has it
            return None
        # "-" when the name has no letters or digits: never a valid slug, so the hook names project_name.
        return slugify(str(answers.get("project_name", "")), max_length=50) or "-"
    if name == "hpc_workdir":
        return f"/home/{answers.get('hpc_user', '')}/mlops"
    if name == "wandb_project":
        return str(answers.get("project_slug", ""))
    return None


# Which answer a derived default comes from, for messages when a derived value is refused.
DERIVED_FROM = {"project_slug": "project_name", "hpc_workdir": "hpc_user", "wandb_project": "project_slug"}


def _host_problem(field: str, value: str, allow_port: bool = False) -> Problem | None:
    """Explain what is wrong with a host answer, naming the most likely mistake first."""
    if not value:
        return Problem(field, "is empty", "give the host name, e.g. 'login.cluster.example.edu'")
    if "://" in value:
        bare = value.split("://", 1)[1].split("/", 1)[0]
        return Problem(field, f"{value!r} contains a URL scheme", f"give only the host name, e.g. {bare!r}")
    if any(c.isspace() for c in value):
        return Problem(field, f"{value!r} contains spaces", "remove the spaces")
    if "@" in value:
        return Problem(field, f"{value!r} contains a user name", "put the user into hpc_user, the host here")
    if "/" in value:
        return Problem(field, f"{value!r} contains a path", "give only the host name, without '/...'")
    host, _, port = value.partition(":")
    if port:
        if not allow_port:
            return Problem(field, f"{value!r} contains a port", "put the port into hpc_port")
        if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            return Problem(field, f"port {port!r} is not a TCP port", "use a number from 1 to 65535")
    if not _HOST.fullmatch(host) or len(host) > 253:
        return Problem(
            field,
            f"{value!r} is not a valid host name",
            "use letters, digits, hyphens and dots, e.g. 'login.cluster.example.edu'",
        )
    return None


def _jump_problem(value: str) -> Problem | None:
    user, _, hostport = value.rpartition("@")
    if user and not _USER.fullmatch(user):
        return Problem(
            "hpc_jump_host",
            f"user {user!r} is not a valid user name",
            "use the form [user@]host[:port] with a lowercase user name",
        )
    problem = _host_problem("hpc_jump_host", hostport, allow_port=True)
    return problem


def _ssh_key_problem(value: str) -> Problem | None:
    """The answer must be a path to a key file: a pasted key would end up in .cruft.json and the replay file."""
    field = "hpc_ssh_key"
    if "PRIVATE KEY" in value or "\n" in value or value.startswith(("ssh-", "ecdsa-", "sk-")):
        return Problem(
            field,
            "looks like a key, not a path to a key file (answers are stored in plain text in .cruft.json)",
            "give the path of the private key file, e.g. '~/.ssh/id_ed25519', "
            "and remove the pasted key from your shell history",
        )
    if not value.strip():
        return Problem(field, "is empty", "give the path of your private key, e.g. '~/.ssh/id_ed25519'")
    if value.endswith(".pub"):
        return Problem(field, f"{value!r} is a public key file", f"give the private key beside it: {value[:-4]!r}")
    if len(value) > 1024 or any(c in value for c in "\0\r\t"):
        return Problem(field, f"{value[:40]!r}... is not a usable file path", "give a path such as '~/.ssh/id_ed25519'")
    return None


def validate(answers: dict) -> list[Problem]:
    """Every problem with a set of answers (empty list = fine). Keys starting with '_' are ignored."""
    a = {
        k: ("" if v is None else str(v).strip() if not isinstance(v, str) else v)
        for k, v in answers.items()
        if not k.startswith("_")
    }
    problems: list[Problem] = []

    def need(cond: bool, field: str, message: str, fix: str) -> None:
        if not cond:
            problems.append(Problem(field, message, fix))

    missing = [o.name for o in OPTIONS if o.name not in a]
    for name in missing:
        problems.append(Problem(name, "is missing", f"answer the '{name}' question"))
    unknown = sorted(set(a) - set(BY_NAME))
    for name in unknown:
        problems.append(
            Problem(
                name, "is not an option of this template", "remove it; known options are listed in the template README"
            )
        )
    if missing:
        return problems

    for option in OPTIONS:
        if option.choices and a[option.name] not in option.choices:
            problems.append(
                Problem(
                    option.name,
                    f"{a[option.name]!r} is not one of the choices",
                    "choose one of " + ", ".join(option.choices),
                )
            )

    # Control characters first: a line break in any answer would end a TOML/YAML line or a shell line.
    for option in OPTIONS:
        if not option.choices and control_characters(a[option.name]):
            problems.append(
                Problem(
                    option.name,
                    f"{a[option.name][:40]!r} contains a control character (line break, tab, escape ...)",
                    "give it on one line, without control characters",
                )
            )
    need(
        bool(a["project_name"].strip()),
        "project_name",
        "must be one non-empty line",
        "give a short name such as 'Load Forecasting'",
    )
    need(
        bool(_SLUG.fullmatch(a["project_slug"])) and len(a["project_slug"]) <= 50,
        "project_slug",
        f"{a['project_slug']!r} is not a valid slug",
        "use at most 50 lowercase letters, digits and single hyphens, starting with a letter, e.g. 'load-forecasting'",
    )
    need(
        bool(_EMAIL.fullmatch(a["author_email"])),
        "author_email",
        f"{a['author_email']!r} is not an e-mail address",
        "use the form name@example.org",
    )
    for field in ("gitlab_host", "hpc_host"):
        problem = _host_problem(field, a[field], allow_port=(field == "gitlab_host"))
        if problem:
            problems.append(problem)
    port = a["hpc_port"]
    need(
        port.isascii() and port.isdigit() and 1 <= int(port) <= 65535,
        "hpc_port",
        f"{port!r} is not a TCP port",
        "use a number from 1 to 65535 (22 is the SSH default)",
    )
    need(
        bool(_USER.fullmatch(a["hpc_user"])),
        "hpc_user",
        f"{a['hpc_user']!r} is not a valid user name",
        "use your cluster login: lowercase letters, digits, '_', '.', '-', at most 32 characters",
    )
    if a["hpc_jump_host"]:
        problem = _jump_problem(a["hpc_jump_host"])
        if problem:
            problems.append(problem)
        elif a["hpc_jump_host"].rpartition("@")[2].partition(":")[0] == a["hpc_host"]:
            problems.append(
                Problem(
                    "hpc_jump_host",
                    "is the same host as hpc_host",
                    "leave hpc_jump_host empty when the login node is reachable directly",
                )
            )
    problem = _ssh_key_problem(a["hpc_ssh_key"])
    if problem:
        problems.append(problem)
    workdir = a["hpc_workdir"]
    if not workdir.startswith("/"):
        problems.append(
            Problem(
                "hpc_workdir",
                f"{workdir!r} is not an absolute path",
                f"start it with '/', e.g. '/home/{a['hpc_user']}/mlops'",
            )
        )
    elif not _WORKDIR.fullmatch(workdir) or "/../" in workdir + "/" or workdir.rstrip("/") == "":
        problems.append(
            Problem(
                "hpc_workdir",
                f"{workdir!r} contains characters or parts that are unsafe in a path",
                "use letters, digits, '.', '_', '-', '+' and '/', no '..', and not '/' itself",
            )
        )
    for field in ("slurm_partition", "slurm_account", "wandb_entity"):
        need(
            not a[field] or bool(_PLAIN.fullmatch(a[field])),
            field,
            f"{a[field]!r} contains unexpected characters",
            "use letters, digits, '_', '.', '-' (or leave it empty)",
        )
    need(
        bool(_PLAIN.fullmatch(a["wandb_project"])),
        "wandb_project",
        f"{a['wandb_project']!r} is not a valid W&B project",
        "use letters, digits, '_', '.', '-'",
    )

    # Contradictory choices: each names both fields, so the user knows which one to change.
    if a["scheduler"] == "none":
        for field in ("slurm_partition", "slurm_account"):
            need(
                not a[field],
                field,
                f"is set to {a[field]!r} but scheduler is 'none'",
                f"clear {field} or choose scheduler 'slurm'",
            )
    if a["use_gpu"] == "yes" and a["ml_framework"] == "scikit-learn":
        problems.append(
            Problem(
                "use_gpu",
                "'yes' has no effect with ml_framework 'scikit-learn'",
                "choose ml_framework 'pytorch' or use_gpu 'no'",
            )
        )
    if a["use_gpu"] == "yes" and a["container_runtime"] == "charliecloud":
        problems.append(
            Problem(
                "use_gpu",
                "'yes' is not supported with container_runtime 'charliecloud' by this template",
                "choose apptainer, singularity or podman, or use_gpu 'no'",
            )
        )
    if a["hpc_auth"] == "command-key" and a["hpc_jump_host"]:
        problems.append(
            Problem(
                "hpc_auth",
                "'command-key' cannot be used through hpc_jump_host (a restricted key allows no forwarding)",
                "clear hpc_jump_host or choose hpc_auth 'totp', 'totp+password' or 'key'",
            )
        )
    return _explain_derived(_first_per_field(problems), a)


def _first_per_field(problems: list[Problem]) -> list[Problem]:
    """A field with a control character gets that one message, not a second one about the same value."""
    bad = {p.field for p in problems if "control character" in p.message}
    seen: set[str] = set()
    kept = []
    for p in problems:
        if p.field in bad and p.field in seen:
            continue
        seen.add(p.field)
        kept.append(p)
    return kept


def _explain_derived(problems: list[Problem], a: dict) -> list[Problem]:
    """A refused value that was derived from another answer says so, and which answer fixes it."""
    out = []
    for p in problems:
        source = DERIVED_FROM.get(p.field)
        if source and a.get(p.field) == derived(p.field, a) and a.get(p.field) != a.get(source):
            p = Problem(
                p.field,
                f"{p.message} (derived from {source} {a[source]!r})",
                f"answer {p.field} yourself ({p.fix}), or change {source}",
            )
        out.append(p)
    return out


# --- mlops.toml: every key, its type, default and rule --------------------------------------------
# A key that stores a template answer takes its default and rule from the Option above (validate());
# the keys below have no template question: their default and rule live here and nowhere else.

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
    """One mlops.toml key with no template question: `section.name`, its type, default, rule and comment."""

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
        return self.default.format(**answers) if isinstance(self.default, str) else self.default


_TIME_RULE = _pattern(_SLURM_TIME, "a SLURM time", "use minutes, HH:MM:SS or D-HH:MM:SS, e.g. '01:00:00'")
_MEM_RULE = _pattern(_SLURM_MEM, "a SLURM memory size", "use a whole number with an optional K, M, G or T, e.g. '4G'")
_IMAGE_RULE = _pattern(
    _IMAGE_REF, "an image reference", "use e.g. 'python:3.11-slim' or 'registry.example.org/py:3.11'"
)
_PARTITION_RULE = _pattern(_PLAIN, "a SLURM partition", "use letters, digits, '_', '.', '-' (or leave it empty)", True)

# A table: section, key, type, default, comment, rule.
# fmt: off
SETTINGS_KEYS: tuple[Key, ...] = (
    Key("scheduler", "time", str, "01:00:00", "wall time per model task (SLURM --time)", _TIME_RULE),
    Key("scheduler", "cpus_per_task", int, 2, "CPU cores per model task (SLURM --cpus-per-task)", _at_least(1)),
    Key("scheduler", "mem", str, "4G", "memory per model task (SLURM --mem: a number with K, M, G or T)", _MEM_RULE),
    Key("scheduler", "parallel", int, 4, "at most this many model tasks at once (the %K of the array)", _at_least(1)),
    Key("build", "base_image", str, "python:{python_version}-slim", "FROM of all three images", _IMAGE_RULE),
    Key(
        "notify",
        "partition",
        str,
        "",
        "partition of the notification job (empty = scheduler.partition)",
        _PARTITION_RULE,
    ),
    Key("notify", "timeout_s", int, 30, "seconds a notification may take", _at_least(1, " seconds")),
    Key("collect", "max_file_bytes", int, 268435456, "largest single file collect downloads (bytes)", _at_least(1)),
    Key("collect", "max_total_bytes", int, 2147483648, "largest total download of one collect (bytes)", _at_least(1)),
    Key("collect", "max_members", int, 100000, "most files in one results archive", _at_least(1)),
    Key("collect", "max_path_length", int, 1024, "longest path inside a results archive (characters)", _at_least(1)),
    Key("collect", "log_tail_bytes", int, 65536, "bytes of a failed task's log kept in the report", _at_least(0)),
    Key("collect", "log_tail_lines", int, 30, "lines of a failed task's log shown in the report", _at_least(0)),
    Key("images", "keep", int, 5, "image digests kept on the cluster per stage (older ones removed)", _at_least(1)),
)
# fmt: on
# mlops.toml's sections in file order.
SECTIONS = ("project", "cluster", "scheduler", "build", "wandb", "notify", "collect", "images")
# Answers whose mlops.toml value is not a string.
TYPES: dict[str, type] = {"hpc_port": int, "use_gpu": bool}


def cookiecutter_json() -> dict:
    """The content of the template's cookiecutter.json, generated from OPTIONS."""
    data: dict = {o.name: o.default for o in OPTIONS}
    data["__prompts__"] = {o.name: o.prompt for o in OPTIONS}
    # Files that carry foreign braces (GitLab `$[[ inputs ]]`, Python format strings) or that must be
    # identical in every rendered project are copied verbatim, never rendered by Jinja.
    # fnmatch patterns: `*` also crosses `/`, so "src/mlops/*" covers the subpackages and their data files.
    data["_copy_without_render"] = [
        "src/mlops/*",
        "*.sh",
        ".gitlab/ci/*.yml",
        "params/parameters.schema.json",
    ]
    return data
