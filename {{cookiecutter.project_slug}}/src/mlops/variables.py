"""The CI/CD variable manifest `.gitlab/ci-variables.yml`, its upload to GitLab and the local
gitlab-ci-local variables file. The table of names and flags is mlops.civars. Never values in the
manifest: only names, kinds and flags.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import civars, options
from .civars import CLUSTER_JOBS, VARIABLES, Variable  # noqa: F401 (re-exported for callers of 0.2)

MANIFEST = Path(".gitlab") / "ci-variables.yml"
LOCAL_FILE = Path(".gitlab-ci-local-variables.yml")  # gitignored; holds secrets, mode 0600


def for_answers(answers: dict) -> list[Variable]:
    """The variables a project with these answers needs."""
    return civars.needed(str(answers.get("hpc_auth", "")), str(answers.get("wandb_mode", "")))


# ------------------------------------------------------------------ the manifest (.gitlab/ci-variables.yml)


def _yaml_str(text: str) -> str:
    """A YAML double-quoted scalar, serialized by json (YAML 1.2 reads every JSON string). Callers refuse
    control characters first: PyYAML rejects some raw ones (C1) that json leaves unescaped."""
    return json.dumps(text, ensure_ascii=False)


def manifest_text(answers: dict) -> str:
    """The protected-variable manifest for these answers: names and flags, never values. Deterministic."""
    lines = [
        "# CI/CD variables this project's pipeline reads: names and flags, NEVER values.",
        "# Generated from src/mlops/civars.py for the options in mlops.toml; do not edit by hand:",
        "#   mlops variables write            regenerate after changing mlops.toml",
        "#   mlops variables upload [--apply] set them on the GitLab project with these flags (values from",
        "#                                    your environment and files; a dry run unless --apply)",
        "#   mlops variables local            an untracked 0600 file for running the pipeline with gitlab-ci-local",
        "# type file: GitLab writes the value to a temp file and gives the job its path.",
        "# masked: hidden in job logs (GitLab requires one line, >= 8 characters, no spaces).",
        "# hidden: masked and hidden, nobody can read it back in the UI (GitLab >= 17.4; set at creation).",
        "# environment_scope: only jobs with a matching `environment:` see it.",
        "# manual: typed by a person when starting the manual job, never stored in the project.",
        "# optional: the pipeline works without it (with less); `mlops variables upload` skips it when unset.",
        "variables:",
    ]
    for v in for_answers(answers):
        lines += [
            f"  - name: {v.name}",
            f"    description: {_yaml_str(v.description)}",
            f"    type: {v.kind}",
            f"    protected: {str(v.protected).lower()}",
            f"    masked: {str(v.masked).lower()}",
            f"    hidden: {str(v.hidden).lower()}",
            f"    raw: {str(v.raw).lower()}",
            f"    environment_scope: {_yaml_str(civars.SHARED_SCOPE)}",
            f"    manual: {str(v.manual).lower()}",
            f"    optional: {str(v.optional).lower()}",
            f"    secret: {str(v.secret).lower()}",
            "    jobs:",
            *[f"      - {job}" for job in v.jobs],
        ]
    return "\n".join(lines) + "\n"


def write_manifest(project_dir: Path, answers: dict) -> Path:
    """Write .gitlab/ci-variables.yml atomically (a temp file renamed over it: never half-written)."""
    path = Path(project_dir) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(manifest_text(answers), encoding="utf-8")
    os.replace(tmp, path)
    return path


def masking_problem(value: str) -> str | None:
    """Why GitLab would refuse to mask this value (None = maskable). Says nothing about the value itself."""
    if "\n" in value.strip() or "\r" in value:
        return "it has several lines"
    if len(value) < 8:
        return "it is shorter than 8 characters"
    if any(c.isspace() for c in value):
        return "it contains spaces"
    return None


# ------------------------------------------------------------------ upload to GitLab / local variables file


@dataclass(frozen=True)
class Planned:
    variable: Variable
    value: str = field(repr=False)  # never printed; repr=False keeps it out of tracebacks too


def plan(answers: dict, env: Mapping[str, str] = os.environ) -> tuple[list[Planned], list[str]]:
    """Values for the stored (non-manual) variables from this machine; (planned, problems)."""
    from . import credentials

    planned, problems = [], []
    for v in for_answers(answers):
        if v.manual or (v.optional and not env.get(v.name, "").strip()):
            continue
        try:
            value = credentials.value_for(v.name, answers, env)
        except credentials.CredentialError as exc:
            problems.append(str(exc))
            continue
        why = masking_problem(value) if v.masked else None
        if why:
            problems.append(f"{v.name}: GitLab cannot mask this value because {why}. Fix: check the value you exported")
            continue
        planned.append(Planned(v, value))
    return planned, problems


def _flags(v: Variable) -> str:
    flags = [
        v.kind,
        "protected" if v.protected else "unprotected",
        "masked and hidden" if v.hidden else ("masked" if v.masked else "not masked"),
        f"scope {civars.SHARED_SCOPE}",
    ]
    return ", ".join(flags)


def upload(
    answers: dict,
    project: str,
    url: str,
    token: str | None,
    apply: bool = False,
    env: Mapping[str, str] = os.environ,
    out: TextIO | None = None,
) -> int:
    """Set the variables on GitLab project `project` (path or id). Dry run unless `apply`. Never prints a value.

    Returns 0 (done / would be done), 2 (bad input: nothing was changed on GitLab).
    """
    import sys

    out = out or sys.stdout
    from . import credentials

    planned, problems = plan(answers, env)
    if token:  # a dry run needs no token, but a wrong one is better caught now than at --apply
        check = credentials.check_gitlab_token(token)
        if check.problem:
            problems.append(f"{credentials.GITLAB_TOKEN_VAR}: {check.detail}. Fix: {check.fix}")
    for problem in problems:
        print(f"mlops variables upload: {problem}", file=sys.stderr)
    if problems:
        print("mlops variables upload: nothing was changed on GitLab", file=sys.stderr)
        return 2
    if not apply:
        for p in planned:
            print(f"would set {p.variable.name} ({_flags(p.variable)}) on {project}", file=out)
        print("dry run: nothing was sent; add --apply to set them", file=out)
        return 0
    if not token:
        print(
            "mlops variables upload: GITLAB_TOKEN is not set. Fix: export a project access token with the api "
            "scope (never put it on the command line)",
            file=sys.stderr,
        )
        return 2
    import gitlab  # python-gitlab, the [gitlab] extra

    try:
        gl = gitlab.Gitlab(url, private_token=token, timeout=30)
        proj = gl.projects.get(project)
        existing = {(x.key, x.environment_scope) for x in proj.variables.list(get_all=True)}
    except Exception as exc:
        print(
            f"mlops variables upload: cannot reach project {project!r} at {url} ({type(exc).__name__}). Fix: check "
            "project.gitlab_host, the project path and the token's scope (api, role Maintainer); "
            "nothing was changed",
            file=sys.stderr,
        )
        return 2
    for p in planned:
        v = p.variable
        attrs = {
            "value": p.value,
            "variable_type": v.kind,
            "protected": v.protected,
            "raw": v.raw,
            "description": v.description,
            "environment_scope": civars.SHARED_SCOPE,
        }
        try:
            if (v.name, civars.SHARED_SCOPE) in existing:
                # Hidden-ness is fixed at creation; an update sends the value and the other flags.
                proj.variables.update(
                    v.name, {**attrs, "masked": v.masked}, filter={"environment_scope": civars.SHARED_SCOPE}
                )
                action = "updated"
            else:
                flags = {"masked_and_hidden": True, "masked": True} if v.hidden else {"masked": v.masked}
                proj.variables.create({"key": v.name, **attrs, **flags})
                action = "created"
        except Exception as exc:
            print(
                f"mlops variables upload: {v.name}: GitLab refused it ({type(exc).__name__}: "
                f"{getattr(exc, 'error_message', '')}); the variables before it were set",
                file=sys.stderr,
            )
            return 2
        print(f"{action} {v.name} ({_flags(v)})", file=out)
    return 0


def write_local(project_dir: Path, answers: dict, env: Mapping[str, str] = os.environ) -> tuple[Path | None, list[str]]:
    """The gitlab-ci-local variables file (mode 0600, gitignored) for running the pipeline on this machine.

    File variables are written as the PATH of the file (gitlab-ci-local copies it for the job), so the key
    itself is not copied; env variables (TOTP secret, W&B key) must be written as values.
    """
    from . import credentials

    path = Path(project_dir) / LOCAL_FILE
    lines, missing = (
        [
            "# gitlab-ci-local variables: written by `mlops variables local`; holds secrets.",
            "# Mode 0600, gitignored; delete it when done (mlops variables local --remove).",
        ],
        [],
    )
    for v in for_answers(answers):
        try:
            if v.kind == "file" and v.name == credentials.KEY_VAR:
                credentials.value_for(v.name, answers, env)  # validated, not copied
                value = os.path.abspath(os.path.expanduser(credentials.key_path(answers, env)[0]))
            elif (v.manual or v.optional) and not env.get(v.name, "").strip():
                continue
            else:
                value = credentials.value_for(v.name, answers, env)
        except credentials.CredentialError as exc:
            missing.append(str(exc))
            continue
        if options.control_characters(value):  # never show the value: it may be a secret
            missing.append(f"{v.name}: the value holds a control character (a line break?). Fix: set it on one line")
            continue
        lines.append(f"{v.name}: {_yaml_str(value)}")
    if missing:
        return None, missing  # all or nothing: a partial file would fail later, far from the cause
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # O_CREAT keeps the mode of an existing file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # 0600 from the first byte
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path, missing
