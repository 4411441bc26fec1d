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
from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    name: str
    default: object  # a string (maybe a Jinja expression over earlier answers) or a list of choices
    prompt: str
    help: str

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.default) if isinstance(self.default, list) else ()


OPTIONS: tuple[Option, ...] = (
    Option("project_name", "Forecasting Experiments", "Project name",
           "Human-readable name, used in the README and the W&B project default."),
    Option("project_slug",
           "{{ cookiecutter.project_name.lower().strip().replace(' ', '-').replace('_', '-') }}",
           "Project slug (folder, image and cluster directory name)",
           "Lowercase letters, digits and single hyphens; derived from the name."),
    Option("description", "Time-series forecasting experiments run on the group's HPC cluster.",
           "One-line description", "Goes into the README and the package metadata."),
    Option("author_name", "Jane Doe", "Your name", "Package and image metadata."),
    Option("author_email", "jane.doe@example.org", "Your e-mail", "Package metadata."),
    Option("python_version", ["3.11", "3.12", "3.13"], "Python version of the images",
           "Selects the `python:<version>-slim` base image of all three images."),
    Option("ml_framework", ["scikit-learn", "pytorch"], "ML framework of the example model",
           "The example forecasting model in `model/train.py` (pytorch uses CPU torch unless use_gpu)."),
    Option("gitlab_host", "gitlab.example.com", "GitLab host (no https://)",
           "Host name of your GitLab instance, optionally with :port."),
    Option("hpc_host", "hpc.example.org", "HPC login node host name",
           "The cluster's SSH login node, host name only."),
    Option("hpc_port", "22", "HPC SSH port", "TCP port of the login node's SSH server."),
    Option("hpc_user", "jdoe", "Your user name on the cluster", "The account that runs the jobs."),
    Option("hpc_jump_host", "", "Jump host ([user@]host[:port], empty = none)",
           "For clusters reachable only from a university network (OpenSSH ProxyJump syntax)."),
    Option("hpc_workdir", "/home/{{ cookiecutter.hpc_user }}/mlops",
           "Absolute work directory on the cluster",
           "Images and run directories go below `<workdir>/<slug>/` (a workspace path is a good choice)."),
    Option("hpc_auth", ["totp", "command-key", "key"], "How CI logs in to the cluster",
           "totp: SSH key + one-time code; command-key: a restricted automation key; key: plain SSH key."),
    Option("hpc_ssh_key", "~/.ssh/id_ed25519", "Path of your SSH private key for the cluster (a path, not the key)",
           "Checked locally by `mlops check-credentials` (exists, mode 0600, matches its .pub); the key itself "
           "never enters the project: CI gets it from the HPC_SSH_PRIVATE_KEY file variable."),
    Option("scheduler", ["slurm", "none"], "Batch scheduler on the cluster",
           "slurm: job arrays with afterok dependencies; none: run on the host with bounded parallelism."),
    Option("slurm_partition", "", "SLURM partition (empty = cluster default)", "`--partition` of every job."),
    Option("slurm_account", "", "SLURM account (empty = your default)", "`--account` of every job."),
    Option("container_runtime", ["apptainer", "singularity", "podman", "charliecloud"],
           "Container runtime on the cluster", "How the cluster runs the images (converted once per digest)."),
    Option("image_builder", ["buildah", "buildkit", "kaniko", "img"], "Image builder in CI",
           "Daemonless, unprivileged builders. img is unmaintained since 2020; kept for groups using it."),
    Option("wandb_mode", ["offline", "online", "disabled"], "Weights & Biases mode on compute nodes",
           "offline: runs are written next to the results and synced from the login node by `mlops collect`."),
    Option("wandb_entity", "", "W&B entity (team or user, empty = your default)", "Where runs are synced."),
    Option("wandb_project", "{{ cookiecutter.project_slug }}", "W&B project", "Project the runs are grouped in."),
    Option("use_gpu", ["no", "yes"], "Train on GPUs", "Requests `--gres=gpu:1` and the runtime's GPU flag."),
)

BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Problem:
    """One rejected answer: which field, what is wrong, how to fix it."""
    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}. Fix: {self.fix}."


_SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_PLAIN = re.compile(r"^[A-Za-z0-9_.-]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_WORKDIR = re.compile(r"^/[A-Za-z0-9._/+-]*$")


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
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            return Problem(field, f"port {port!r} is not a TCP port", "use a number from 1 to 65535")
    if not _HOST.match(host) or len(host) > 253:
        return Problem(field, f"{value!r} is not a valid host name",
                       "use letters, digits, hyphens and dots, e.g. 'login.cluster.example.edu'")
    return None


def _jump_problem(value: str) -> Problem | None:
    user, _, hostport = value.rpartition("@")
    if user and not _USER.match(user):
        return Problem("hpc_jump_host", f"user {user!r} is not a valid user name",
                       "use the form [user@]host[:port] with a lowercase user name")
    problem = _host_problem("hpc_jump_host", hostport, allow_port=True)
    return problem


def _ssh_key_problem(value: str) -> Problem | None:
    """The answer must be a path to a key file: a pasted key would end up in .cruft.json and the replay file."""
    field = "hpc_ssh_key"
    if "PRIVATE KEY" in value or "\n" in value or value.startswith(("ssh-", "ecdsa-", "sk-")):
        return Problem(field, "looks like a key, not a path to a key file (answers are stored in plain text "
                              "in .cruft.json)", "give the path of the private key file, e.g. '~/.ssh/id_ed25519', "
                              "and remove the pasted key from your shell history")
    if not value.strip():
        return Problem(field, "is empty", "give the path of your private key, e.g. '~/.ssh/id_ed25519'")
    if value.endswith(".pub"):
        return Problem(field, f"{value!r} is a public key file", f"give the private key beside it: {value[:-4]!r}")
    if len(value) > 1024 or any(c in value for c in "\0\r\t"):
        return Problem(field, f"{value[:40]!r}... is not a usable file path", "give a path such as '~/.ssh/id_ed25519'")
    return None


def validate(answers: dict) -> list[Problem]:
    """Every problem with a set of answers (empty list = fine). Keys starting with '_' are ignored."""
    a = {k: ("" if v is None else str(v).strip() if not isinstance(v, str) else v)
         for k, v in answers.items() if not k.startswith("_")}
    problems: list[Problem] = []

    def need(cond: bool, field: str, message: str, fix: str) -> None:
        if not cond:
            problems.append(Problem(field, message, fix))

    missing = [o.name for o in OPTIONS if o.name not in a]
    for name in missing:
        problems.append(Problem(name, "is missing", f"answer the '{name}' question"))
    unknown = sorted(set(a) - set(BY_NAME))
    for name in unknown:
        problems.append(Problem(name, "is not an option of this template",
                                f"remove it; known options are listed in the template README"))
    if missing:
        return problems

    for option in OPTIONS:
        if option.choices and a[option.name] not in option.choices:
            problems.append(Problem(option.name, f"{a[option.name]!r} is not one of the choices",
                                    "choose one of " + ", ".join(option.choices)))

    need(bool(a["project_name"].strip()) and "\n" not in a["project_name"], "project_name",
         "must be one non-empty line", "give a short name such as 'Load Forecasting'")
    need(bool(_SLUG.match(a["project_slug"])) and len(a["project_slug"]) <= 50, "project_slug",
         f"{a['project_slug']!r} is not a valid slug",
         "use at most 50 lowercase letters, digits and single hyphens, starting with a letter, e.g. 'load-forecasting'")
    need("\n" not in a["description"], "description", "must be one line", "remove the line breaks")
    need(bool(_EMAIL.match(a["author_email"])), "author_email", f"{a['author_email']!r} is not an e-mail address",
         "use the form name@example.org")
    for field in ("gitlab_host", "hpc_host"):
        problem = _host_problem(field, a[field], allow_port=(field == "gitlab_host"))
        if problem:
            problems.append(problem)
    port = a["hpc_port"]
    need(port.isdigit() and 1 <= int(port) <= 65535, "hpc_port", f"{port!r} is not a TCP port",
         "use a number from 1 to 65535 (22 is the SSH default)")
    need(bool(_USER.match(a["hpc_user"])), "hpc_user", f"{a['hpc_user']!r} is not a valid user name",
         "use your cluster login: lowercase letters, digits, '_', '.', '-', at most 32 characters")
    if a["hpc_jump_host"]:
        problem = _jump_problem(a["hpc_jump_host"])
        if problem:
            problems.append(problem)
        elif a["hpc_jump_host"].rpartition("@")[2].partition(":")[0] == a["hpc_host"]:
            problems.append(Problem("hpc_jump_host", "is the same host as hpc_host",
                                    "leave hpc_jump_host empty when the login node is reachable directly"))
    problem = _ssh_key_problem(a["hpc_ssh_key"])
    if problem:
        problems.append(problem)
    workdir = a["hpc_workdir"]
    if not workdir.startswith("/"):
        problems.append(Problem("hpc_workdir", f"{workdir!r} is not an absolute path",
                                f"start it with '/', e.g. '/home/{a['hpc_user']}/mlops'"))
    elif not _WORKDIR.match(workdir) or "/../" in workdir + "/" or workdir.rstrip("/") == "":
        problems.append(Problem("hpc_workdir", f"{workdir!r} contains characters or parts that are unsafe in a path",
                                "use letters, digits, '.', '_', '-', '+' and '/', no '..', and not '/' itself"))
    for field in ("slurm_partition", "slurm_account", "wandb_entity"):
        need(not a[field] or bool(_PLAIN.match(a[field])), field, f"{a[field]!r} contains unexpected characters",
             "use letters, digits, '_', '.', '-' (or leave it empty)")
    need(bool(_PLAIN.match(a["wandb_project"])), "wandb_project", f"{a['wandb_project']!r} is not a valid W&B project",
         "use letters, digits, '_', '.', '-'")

    # Contradictory choices: each names both fields, so the user knows which one to change.
    if a["scheduler"] == "none":
        for field in ("slurm_partition", "slurm_account"):
            need(not a[field], field, f"is set to {a[field]!r} but scheduler is 'none'",
                 f"clear {field} or choose scheduler 'slurm'")
    if a["use_gpu"] == "yes" and a["ml_framework"] == "scikit-learn":
        problems.append(Problem("use_gpu", "'yes' has no effect with ml_framework 'scikit-learn'",
                                "choose ml_framework 'pytorch' or use_gpu 'no'"))
    if a["use_gpu"] == "yes" and a["container_runtime"] == "charliecloud":
        problems.append(Problem("use_gpu", "'yes' is not supported with container_runtime 'charliecloud' by this template",
                                "choose apptainer, singularity or podman, or use_gpu 'no'"))
    if a["hpc_auth"] == "command-key" and a["hpc_jump_host"]:
        problems.append(Problem("hpc_auth", "'command-key' cannot be used through hpc_jump_host "
                                "(a restricted key allows no forwarding)",
                                "clear hpc_jump_host or choose hpc_auth 'totp' or 'key'"))
    return problems


def cookiecutter_json() -> dict:
    """The content of the template's cookiecutter.json, generated from OPTIONS."""
    data: dict = {o.name: o.default for o in OPTIONS}
    data["__prompts__"] = {o.name: o.prompt for o in OPTIONS}
    # Files that carry foreign braces (GitLab `$[[ inputs ]]`, Python format strings) or that must be
    # identical in every rendered project are copied verbatim, never rendered by Jinja.
    data["_copy_without_render"] = [
        "src/mlops/*.py",
        "src/mlops/*.sh",   # fnmatch: also src/mlops/cluster/shell/*.sh (bash has `${#x[@]}`, a Jinja comment)
        ".gitlab/ci/*.yml",
        "params/parameters.schema.json",
    ]
    return data
