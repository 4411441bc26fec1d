"""The rules every set of answers must satisfy, each written once.

The pre/post-generation hooks validate the template answers with `validate()`, and mlops.settings runs
the same rules on every cluster block of mlops.toml later (a block read as the answers it stands for),
so a rule lives here and nowhere else. Each Problem names the field, what is wrong and the fix.
"""

from __future__ import annotations

from .questions import BY_NAME, DERIVED_FROM, OPTIONS, derived
from .values import (
    EMAIL,
    PLAIN,
    SLUG,
    USER,
    Problem,
    cluster_name_problem,
    control_characters,
    host_problem,
    jump_problem,
    ssh_key_problem,
    workdir_problem,
)


def validate(answers: dict, explain_derived: bool = True) -> list[Problem]:
    """Every problem with a set of answers (empty list = fine). Keys starting with '_' are ignored.

    explain_derived: a refused value that equals its derived default says which answer it came from
    (for template answers; mlops.settings turns it off: there the value was written into the file).
    """
    a = {
        k: ("" if v is None else str(v).strip() if not isinstance(v, str) else v)
        for k, v in answers.items()
        if not k.startswith("_")
    }
    problems = _presence(a)
    if any(p.message == "is missing" for p in problems):
        return problems
    for check in (_choices_and_characters, _project_fields, _cluster_fields, _contradictions):
        problems += check(a)
    problems = _first_per_field(problems)
    return _explain_derived(problems, a) if explain_derived else problems


def _presence(a: dict) -> list[Problem]:
    problems = [Problem(o.name, "is missing", f"answer the '{o.name}' question") for o in OPTIONS if o.name not in a]
    for name in sorted(set(a) - set(BY_NAME)):
        problems.append(
            Problem(
                name, "is not an option of this template", "remove it; known options are listed in the template README"
            )
        )
    return problems


def _choices_and_characters(a: dict) -> list[Problem]:
    problems = []
    for option in OPTIONS:
        value = a[option.name]
        if option.choices and value not in option.choices:
            problems.append(
                Problem(
                    option.name, f"{value!r} is not one of the choices", "choose one of " + ", ".join(option.choices)
                )
            )
        # A line break in any answer would end a TOML/YAML line or a shell line.
        if not option.choices and control_characters(value):
            problems.append(
                Problem(
                    option.name,
                    f"{value[:40]!r} contains a control character (line break, tab, escape ...)",
                    "give it on one line, without control characters",
                )
            )
    return problems


def _project_fields(a: dict) -> list[Problem]:
    problems = []
    if not a["project_name"].strip():
        problems.append(
            Problem("project_name", "must be one non-empty line", "give a short name such as 'Load Forecasting'")
        )
    if not (SLUG.fullmatch(a["project_slug"]) and len(a["project_slug"]) <= 50):
        problems.append(
            Problem(
                "project_slug",
                f"{a['project_slug']!r} is not a valid slug",
                "use at most 50 lowercase letters, digits and single hyphens, starting with a letter, "
                "e.g. 'load-forecasting'",
            )
        )
    if not EMAIL.fullmatch(a["author_email"]):
        problems.append(
            Problem("author_email", f"{a['author_email']!r} is not an e-mail address", "use the form name@example.org")
        )
    problem = host_problem("gitlab_host", a["gitlab_host"], allow_port=True)
    problems += [problem] if problem else []
    problems += _plain_if_set(a, ("wandb_entity",))
    if not PLAIN.fullmatch(a["wandb_project"]):
        problems.append(
            Problem(
                "wandb_project",
                f"{a['wandb_project']!r} is not a valid W&B project",
                "use letters, digits, '_', '.', '-'",
            )
        )
    return problems


def _cluster_fields(a: dict) -> list[Problem]:
    problems = [p for p in (host_problem("hpc_host", a["hpc_host"]), cluster_name_problem(a["cluster_name"])) if p]
    port = a["hpc_port"]
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        problems.append(
            Problem("hpc_port", f"{port!r} is not a TCP port", "use a number from 1 to 65535 (22 is the SSH default)")
        )
    if not USER.fullmatch(a["hpc_user"]):
        problems.append(
            Problem(
                "hpc_user",
                f"{a['hpc_user']!r} is not a valid user name",
                "use your cluster login: lowercase letters, digits, '_', '.', '-', at most 32 characters",
            )
        )
    if a["hpc_jump_host"]:
        problem = jump_problem(a["hpc_jump_host"])
        if problem is None and a["hpc_jump_host"].rpartition("@")[2].partition(":")[0] == a["hpc_host"]:
            problem = Problem("hpc_jump_host", "is the same host as hpc_host",
                              "leave hpc_jump_host empty when the login node is reachable directly")  # fmt: skip
        problems += [problem] if problem else []
    for problem in (ssh_key_problem(a["hpc_ssh_key"]), workdir_problem(a["hpc_workdir"], a["hpc_user"])):
        problems += [problem] if problem else []
    problems += _plain_if_set(a, ("slurm_partition", "slurm_account"))
    return problems


def _plain_if_set(a: dict, fields: tuple[str, ...]) -> list[Problem]:
    """A Problem for each of `fields` that is set and not PLAIN (SLURM and W&B names)."""
    return [
        Problem(f, f"{a[f]!r} contains unexpected characters", "use letters, digits, '_', '.', '-' (or leave it empty)")
        for f in fields
        if a[f] and not PLAIN.fullmatch(a[f])
    ]


def _contradictions(a: dict) -> list[Problem]:
    """Contradictory choices: each names both fields, so the user knows which one to change."""
    problems = []
    if a["scheduler"] == "none":
        for field in ("slurm_partition", "slurm_account"):
            if a[field]:
                problems.append(
                    Problem(
                        field,
                        f"is set to {a[field]!r} but scheduler is 'none'",
                        f"clear {field} or choose scheduler 'slurm'",
                    )
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
    return problems


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
    """A refused value that was derived from another answer says so, and which answer fixes it; when that
    answer is refused itself, the derived value's problem is left out (fixing the source fixes both)."""
    refused = {p.field for p in problems}
    out = []
    for p in problems:
        source = DERIVED_FROM.get(p.field)
        if source and a.get(p.field) == derived(p.field, a) and a.get(p.field) != a.get(source):
            if source in refused:
                continue
            p = Problem(
                p.field,
                f"{p.message} (derived from {source} {a[source]!r})",
                f"answer {p.field} yourself ({p.fix}), or change {source}",
            )
        out.append(p)
    return out
