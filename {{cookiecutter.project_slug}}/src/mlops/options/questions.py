"""The template's questions: one Option per answer, in the order cookiecutter asks them.

`cookiecutter.json` and the options table of the template README are generated from OPTIONS
(`python scripts/sync_options.py`); a unit test fails when they drift.
"""

from __future__ import annotations

from dataclasses import dataclass

# clusters.NAME.auth: how `mlops` logs in (mlops.ssh implements each; the CI variables follow from it).
AUTH_METHODS = ("totp", "totp+password", "command-key", "key")
TOTP_METHODS = ("totp", "totp+password")  # the methods that answer a one-time code

# Where an answer lives in mlops.toml: "section.key", or in the template's cluster block
# "clusters.*.key" ("*" is the block's NAME, itself the answer cluster_name: key "clusters.*").
CLUSTER = "clusters.*"


@dataclass(frozen=True)
class Option:
    """One template question.

    name: the answer's name (cookiecutter variable); default: a string (maybe a Jinja expression over
    earlier answers, see `derived`) or a list of choices (the first is the default); key: where
    mlops.toml stores it; type: its type in mlops.toml (the answer itself is always a string);
    required: False when a hand-written cluster block may leave the key out (it then takes the
    default, e.g. port 22).
    """

    name: str
    default: object
    prompt: str
    key: str
    help: str
    type: type = str
    required: bool = True

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.default) if isinstance(self.default, list) else ()

    @property
    def in_cluster(self) -> bool:
        """True for an answer stored in the cluster's block (or naming it)."""
        return self.key == CLUSTER or self.key.startswith(CLUSTER + ".")

    @property
    def toml_key(self) -> str:
        """The key's name inside its table ("host" for "clusters.*.host"); "" for cluster_name."""
        return "" if self.key == CLUSTER else self.key.rsplit(".", 1)[1]

    def toml_default(self) -> object:
        """The mlops.toml value a block that leaves this key out gets (only for required=False)."""
        raw = self.choices[0] if self.choices else str(self.default)
        return from_answer(self, raw)


def from_answer(option: Option, answer: str) -> object:
    """The mlops.toml value of a (valid) answer string: "22" -> 22, "yes" -> True."""
    if option.type is bool:
        return answer == "yes"
    if option.type is int:
        return int(answer)
    return answer


def to_answer(value: object) -> str:
    """The answer string of an mlops.toml value: True -> "yes", 22 -> "22"."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


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
    Option("hpc_host", "hpc.example.org", "HPC login node host name", "clusters.*.host",
           "The (first) cluster's SSH login node, host name only. More clusters: one `[clusters.NAME]` block each."),
    Option("cluster_name", "{{ cookiecutter.hpc_host.split('.')[0] | lower }}",
           "Short name of this cluster (mlops.toml [clusters.NAME], CI jobs deploy-NAME)", CLUSTER,
           "Lowercase letters, digits and hyphens (at most 32); derived from the host's first label. Names the"
           " cluster's mlops.toml block, its CI jobs and environment `hpc/NAME`, and `mlops ... --cluster NAME`."),
    Option("hpc_port", "22", "HPC SSH port", "clusters.*.port",
           "TCP port of the login node's SSH server.", type=int, required=False),
    Option("hpc_user", "jdoe", "Your user name on the cluster", "clusters.*.user",
           "The account that runs the jobs."),
    Option("hpc_jump_host", "", "Jump host ([user@]host[:port], empty = none)", "clusters.*.jump_host",
           "For clusters reachable only from a university network (OpenSSH ProxyJump syntax).", required=False),
    Option("hpc_workdir", "/home/{{ cookiecutter.hpc_user }}/mlops",
           "Absolute work directory on the cluster", "clusters.*.workdir",
           "Images and run directories go below `<workdir>/<slug>/` (a workspace path is a good choice)."),
    Option("hpc_auth", list(AUTH_METHODS), "How CI logs in to the cluster", "clusters.*.auth",
           "totp: SSH key + one-time code; totp+password: SSH key, one-time code and the service password (bwHPC); "
           "command-key: a restricted automation key; key: plain SSH key."),
    Option("hpc_ssh_key", "~/.ssh/id_ed25519",
           "Path of your SSH private key for the cluster (a path, not the key)", "clusters.*.ssh_key",
           "Checked locally by `mlops check-credentials` (exists, mode 0600, matches its .pub); the key itself never"
           " enters the project: CI gets it from the HPC_SSH_PRIVATE_KEY file variable.", required=False),
    Option("scheduler", ["slurm", "none"], "Batch scheduler on the cluster", "clusters.*.scheduler",
           "slurm: job arrays with afterok dependencies; none: run on the host with bounded parallelism."),
    Option("slurm_partition", "", "SLURM partition (empty = cluster default)", "clusters.*.partition",
           "`--partition` of every job.", required=False),
    Option("slurm_account", "", "SLURM account (empty = your default)", "clusters.*.account",
           "`--account` of every job.", required=False),
    Option("container_runtime", ["apptainer", "singularity", "podman", "charliecloud"],
           "Container runtime on the cluster", "clusters.*.runtime",
           "How the cluster runs the images (converted once per digest)."),
    Option("image_builder", ["buildah", "buildkit", "kaniko", "img"], "Image builder in CI", "build.builder",
           "Daemonless, unprivileged builders. img is unmaintained since 2020; kept for groups using it."),
    Option("wandb_mode", ["offline", "online", "disabled"], "Weights & Biases mode on compute nodes", "wandb.mode",
           "offline: runs are written next to the results and synced from the login node by `mlops collect`."),
    Option("wandb_entity", "", "W&B entity (team or user, empty = your default)", "wandb.entity",
           "Where runs are synced."),
    Option("wandb_project", "{{ cookiecutter.project_slug }}", "W&B project", "wandb.project",
           "Project the runs are grouped in."),
    Option("use_gpu", ["no", "yes"], "Train on GPUs", "clusters.*.use_gpu",
           "Requests `--gres=gpu:1` and the runtime's GPU flag.", type=bool, required=False),
)
# fmt: on

BY_NAME = {option.name: option for option in OPTIONS}
# The answers stored in (or naming) the cluster's block, and the block key -> its option.
CLUSTER_OPTIONS = tuple(o for o in OPTIONS if o.in_cluster)
BY_CLUSTER_KEY = {o.toml_key: o for o in CLUSTER_OPTIONS if o.toml_key}

# Which answer a derived default comes from, for messages when a derived value is refused.
DERIVED_FROM = {  # in answer order: the order cookiecutter derives them in
    "project_slug": "project_name",
    "cluster_name": "hpc_host",
    "hpc_workdir": "hpc_user",
    "wandb_project": "project_slug",
}


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
    if name == "cluster_name":
        return cluster_name_of(str(answers.get("hpc_host", "")))
    if name == "hpc_workdir":
        return f"/home/{answers.get('hpc_user', '')}/mlops"
    if name == "wandb_project":
        return str(answers.get("project_slug", ""))
    return None


def cluster_name_of(host: str) -> str:
    """The name a cluster gets from its host: the first DNS label, lower-cased ("127" for 127.0.0.1).

    The template's default for cluster_name, and the name of the one cluster of a 0.2 mlops.toml
    (0.2's pipeline named its GitLab environment `hpc/<this>`).
    """
    return host.split(".")[0].lower()


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
