"""Render projects in temp dirs, the option matrix, a venv with a rendered project installed.

Rendering goes through cookiecutter's API with a config file in tmp, so the replay file and the
cookiecutters dir never touch the user's home (as pytest-cookies does).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[2]
PROJECT_TEMPLATE = TEMPLATE / "{{cookiecutter.project_slug}}"
if str(PROJECT_TEMPLATE / "src") not in sys.path:
    sys.path.insert(0, str(PROJECT_TEMPLATE / "src"))  # the mlops package, for unit tests

from mlops import options  # noqa: E402

DEFAULTS = {o.name: (o.choices[0] if o.choices else o.default) for o in options.OPTIONS}


def render(out_dir: Path, template: Path = TEMPLATE, **answers) -> Path:
    """Render the template with --no-input and these answers; returns the project dir."""
    from cookiecutter.main import cookiecutter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    home = out_dir / ".cookiecutter-home"
    home.mkdir(exist_ok=True)
    config = home / "config.yaml"
    config.write_text(f"cookiecutters_dir: {home / 'templates'}\nreplay_dir: {home / 'replay'}\n")
    path = cookiecutter(
        str(template),
        no_input=True,
        output_dir=str(out_dir),
        extra_context={k: str(v) for k, v in answers.items()},
        config_file=str(config),
    )
    return Path(path)


def variants() -> list[dict]:
    """An option matrix where every value of every choice appears at least once.

    Not the full product (thousands of renders): the default, then one variant per non-default
    choice value, made valid by the same rules the hooks enforce (the validity filter).
    """
    out = [{}]
    for option in options.OPTIONS:
        for value in option.choices[1:]:
            variant = {option.name: value}
            if option.name == "use_gpu":
                variant["ml_framework"] = "pytorch"
            if option.name == "hpc_auth" and value == "command-key":
                variant["hpc_jump_host"] = ""
            out.append(variant)
    # Combinations users will really pick, beyond single changes.
    out.append({"scheduler": "none", "container_runtime": "podman", "hpc_auth": "key", "wandb_mode": "disabled"})
    out.append(
        {
            "hpc_jump_host": "jump.example.org",
            "slurm_partition": "gpu_4",
            "slurm_account": "ml-lab",
            "use_gpu": "yes",
            "ml_framework": "pytorch",
            "container_runtime": "singularity",
        }
    )
    for v in out:
        assert not options.validate({**DEFAULTS, **answers_for(v)}), v
    return out


def answers_for(variant: dict) -> dict:
    """Full answers for a variant, with the derived defaults filled in as cookiecutter would."""
    a = {**DEFAULTS, **variant}
    for option in options.OPTIONS:  # in answer order, as cookiecutter derives
        if option.name in options.DERIVED_FROM and option.name not in variant:
            a[option.name] = options.derived(option.name, a)
    return a


def variant_id(variant: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in variant.items()) or "defaults"


def make_venv(project: Path) -> Path:
    """A venv that sees the test machine's packages, with the project installed editable."""
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(project)],
        check=True,
    )
    return venv
