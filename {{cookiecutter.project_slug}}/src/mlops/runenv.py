"""The run context every stage gets, computed in ONE place from the settings.

`mlops run --local` (local.py) and the cluster submit (cluster/) both call `stage_env()`; they used
to compute WANDB_PROJECT two different ways. The dict never holds a secret (WANDB_API_KEY is
deliberately absent): it is written into env files and container environments.
"""

from __future__ import annotations

from . import errors, params
from .settings import Settings


def stage_env(s: Settings, run_id: str, project_dir: str, tags: list[str] | None = None) -> dict[str, str]:
    """NAME -> value for the params, data and model stages of run `run_id`.

    project_dir: the run directory as the stage sees it (a local path, or the container mount).
    tags: W&B tags (e.g. "commit=<sha12>", "<image>@<digest>"), joined with commas.
    W&B mode: stages never sync themselves (compute nodes have no network, local runs must not
    wait on one): "disabled" stays disabled, anything else runs offline and `mlops collect` syncs.
    Raises errors.BadInput when a value cannot travel in an env file (mlops.params.SAFE_VALUE).
    """
    env = {
        "RUN_ID": run_id,
        "PROJECT_DIR": project_dir,
        "WANDB_MODE": "disabled" if s.wandb.mode == "disabled" else "offline",
        "WANDB_PROJECT": s.wandb.project or s.project.slug,
        "WANDB_RUN_GROUP": run_id,
    }
    if s.wandb.entity:
        env["WANDB_ENTITY"] = s.wandb.entity
    if tags:
        env["WANDB_TAGS"] = ",".join(tags)
    for name, value in env.items():
        rule = params.PATH_VALUE if name == "PROJECT_DIR" else params.SAFE_VALUE  # a local path: see params
        if not rule.fullmatch(value):
            raise errors.BadInput(f"{name}={value!r}: characters an env file cannot carry. Fix: mlops.toml [wandb] "
                                  "or the run id: letters, digits and _.,:/+@%=- only")  # fmt: skip
    return env


def env_file_text(env: dict[str, str]) -> str:
    """`NAME=value` lines as runtimes' --env-file and a shell read them alike; refuses control characters
    and anything params.SAFE_VALUE does not allow (raises errors.BadInput)."""
    for name, value in env.items():
        if not params.ENV_NAME.fullmatch(name) or not params.SAFE_VALUE.fullmatch(value):
            raise errors.BadInput(f"{name}={value!r}: not a safe env file line (letters, digits, _.,:/+@%=- only)")
    return "".join(f"{name}={value}\n" for name, value in env.items())
