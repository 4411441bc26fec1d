"""Read `mlops.toml`, the one file that holds the project's settings.

Each template option maps to one key of the file (OPTION_KEYS), so `mlops config check` can run
the template's own validation (mlops.options) on a file a user has edited since rendering.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import options

FILENAME = "mlops.toml"

# template option -> (section, key) in mlops.toml
OPTION_KEYS = {
    "project_name": ("project", "name"), "project_slug": ("project", "slug"),
    "description": ("project", "description"), "author_name": ("project", "author_name"),
    "author_email": ("project", "author_email"), "python_version": ("project", "python_version"),
    "ml_framework": ("project", "ml_framework"), "gitlab_host": ("project", "gitlab_host"),
    "hpc_host": ("cluster", "host"), "hpc_port": ("cluster", "port"), "hpc_user": ("cluster", "user"),
    "hpc_jump_host": ("cluster", "jump_host"), "hpc_workdir": ("cluster", "workdir"),
    "hpc_auth": ("cluster", "auth"), "hpc_ssh_key": ("cluster", "ssh_key"),
    "container_runtime": ("cluster", "runtime"),
    "use_gpu": ("cluster", "use_gpu"), "scheduler": ("scheduler", "kind"),
    "slurm_partition": ("scheduler", "partition"), "slurm_account": ("scheduler", "account"),
    "image_builder": ("build", "builder"), "wandb_mode": ("wandb", "mode"),
    "wandb_entity": ("wandb", "entity"), "wandb_project": ("wandb", "project"),
}


class ConfigError(Exception):
    pass


@dataclass
class Config:
    root: Path          # the project directory (where mlops.toml lives)
    data: dict          # the parsed file, section -> key -> value

    def __getitem__(self, section: str) -> dict:
        return self.data.get(section, {})

    def answers(self) -> dict:
        """The file seen as template answers, for mlops.options.validate()."""
        return {name: str(self[section].get(key, "")) for name, (section, key) in OPTION_KEYS.items()}

    @property
    def slug(self) -> str:
        return self["project"]["slug"]

    @property
    def use_gpu(self) -> bool:
        return str(self["cluster"].get("use_gpu", "no")) == "yes"


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` holding mlops.toml."""
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / FILENAME).is_file():
            return candidate
    raise ConfigError(f"no {FILENAME} found in {here} or above: run mlops inside a rendered project")


def load(root: Path | None = None) -> Config:
    root = find_root(root)
    try:
        data = tomllib.loads((root / FILENAME).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{root / FILENAME}: {exc}") from None
    return Config(root, data)


def check(config: Config) -> list[options.Problem]:
    """Validate the file with the template's rules; problems name the mlops.toml key to edit."""
    to_key = {name: f"{s}.{k}" for name, (s, k) in OPTION_KEYS.items()}
    return [options.Problem(f"{to_key.get(p.field, p.field)} ({p.field})", p.message, p.fix)
            for p in options.validate(config.answers())]
