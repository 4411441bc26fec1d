"""The values of ONE cluster's CI/CD variables, from this machine, checked before anything is sent or
written; and what is left out, and why.

Every hpc_auth choice is expressible (issue 18.7): a cluster that logs in with one-time codes either
stores HPC_TOTP_SECRET (`codes="stored"`: the job computes the code) or stores nothing and whoever
clicks types HPC_OTP (`codes="typed"`); a W&B key is optional in mode offline (the runs stay offline,
in the artifacts); the trigger token is optional (no notification: the scheduled pipeline collects).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import civars
from ..credentials import keyfile, shapes, supply
from ..credentials.result import CredentialError, Result

if TYPE_CHECKING:
    from ..settings import Settings

CODES = supply.CODES


@dataclass(frozen=True)
class Planned:
    """A value for `variable` under GitLab environment scope `scope`; `is_path`: the value is a file's path."""

    variable: civars.Variable
    scope: str
    value: str = field(repr=False)  # never printed; repr=False keeps it out of tracebacks too
    is_path: bool = False


@dataclass
class Plan:
    """What one cluster gets: `planned` values, `notes` (left out on purpose, and why), `problems`."""

    cluster: str
    planned: list[Planned] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def plan(
    s: Settings, env: Mapping[str, str] = os.environ, codes: str = "stored", local: bool = False, prompt: bool = False
) -> Plan:
    """The values for the selected cluster `s.cluster` (and the shared ones), checked; never raises for a
    bad value (each is a line of `problems`, naming the variable, the cluster and the fix, never the value).

    `local`: for gitlab-ci-local, the key is given as its file's path (gitlab-ci-local copies the file)."""
    supply.check_codes(s, codes)
    name = s.cluster.name
    out = Plan(name)
    for v in civars.needed(s.cluster.auth, s.wandb.mode):
        scope = v.scope(name)
        if v.manual:
            if codes == "typed":
                out.notes.append(f"{v.name}: typed by whoever starts a job of cluster {name} (never stored)")
            continue
        if v.name == civars.KEY:
            try:
                if local:
                    keyfile.key_text(s.cluster.ssh_key, env)  # checked as CI needs it, not copied
                    path = os.path.abspath(os.path.expanduser(keyfile.key_path(s.cluster.ssh_key, env)[0]))
                    out.planned.append(Planned(v, scope, path, is_path=True))
                else:
                    out.planned.append(Planned(v, scope, keyfile.key_text(s.cluster.ssh_key, env)))
            except CredentialError as exc:
                out.problems.append(f"cluster {name}: {exc}")
            continue
        if v.name == civars.TOTP and codes == "typed":
            if env.get(v.name, "").strip():
                out.notes.append(f"{v.name}: set here but not used (--codes typed): nothing is stored for {name}")
            else:
                out.notes.append(f"{v.name}: not stored (--codes typed): each job of {name} needs a typed {civars.OTP}")
            continue
        value = supply.secret(v.name, env, prompt and not v.optional, name)
        if value is None and v.optional:
            out.notes.append(f"{v.name}: not set, left out (optional: no notification; the schedule collects)")
            continue
        if value is None and v.name == civars.WANDB and s.wandb.mode == "offline":
            out.notes.append(f"{v.name}: not set, left out (wandb.mode offline: the runs stay offline, not synced)")
            continue
        result = _check(v.name, value, s.wandb.mode)
        if result.problem:
            out.problems.append(f"cluster {name}: {result.item}: {result.detail}. Fix: {result.fix}")
            continue
        assert value is not None  # a missing value is a problem above
        value = shapes.normalize_totp(value) if v.name == civars.TOTP else value
        why = shapes.masking_problem(value) if v.masked else None
        if why:
            out.problems.append(f"cluster {name}: {v.name}: GitLab cannot mask this value because {why}")
            continue
        out.planned.append(Planned(v, scope, value))
    return out


def _check(name: str, value: str | None, wandb_mode: str) -> Result:
    checks = {
        civars.TOTP: shapes.check_totp,
        civars.PASSWORD: shapes.check_password,
        civars.TRIGGER_TOKEN: shapes.check_trigger_token,
        civars.WANDB: lambda v: shapes.check_wandb_key(v, wandb_mode),
    }
    return checks[name](value)
