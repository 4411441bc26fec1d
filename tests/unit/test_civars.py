"""mlops.civars, the leaf table of CI variable names: what it may import, who imports it, its scopes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mlops import civars
from support.render import PROJECT_TEMPLATE

PACKAGE = PROJECT_TEMPLATE / "src" / "mlops"


def mlops_imports(path: Path) -> set[str]:
    """Every mlops module `path` imports, at the top or inside a function, as a dotted name."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts[:-1]  # the package the module lies in (for __init__.py: the package itself)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if not module.startswith("mlops"):
                continue
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # `from . import civars` names a module
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mlops")}
    return found


def test_civars_is_a_leaf_importing_only_options():
    assert mlops_imports(PACKAGE / "civars.py") <= {"mlops", "mlops.options"}


@pytest.mark.parametrize("path", sorted((PACKAGE / "ssh").glob("*.py")), ids=lambda p: p.name)
def test_ssh_takes_names_from_civars_never_from_variables_or_credentials(path):
    """The old circle ssh -> variables -> credentials -> ssh is gone: ssh/ reads names from the leaf."""
    bad = {m for m in mlops_imports(path) if m.split(".")[:2] in (["mlops", "variables"], ["mlops", "credentials"])}
    assert not bad, f"{path.name} imports {bad}"


def test_the_helper_sees_relative_imports():
    """The checks above can fail: the helper finds `from ..civars import X` and `from .. import civars`."""
    found = mlops_imports(PACKAGE / "ssh" / "keys.py")
    assert "mlops.civars" in found and "mlops.errors" in found


def test_names_are_constants_of_the_table():
    names = {v.name for v in civars.VARIABLES}
    assert len(names) == len(civars.VARIABLES)
    assert civars.BY_NAME.keys() == names
    assert {civars.KEY, civars.TOTP, civars.OTP, civars.PASSWORD, civars.TRIGGER_TOKEN, civars.WANDB} <= names
    assert civars.GITLAB_TOKEN not in names  # local only: never stored in the project


KEY, CODES, TOKEN = {"HPC_SSH_PRIVATE_KEY"}, {"HPC_TOTP_SECRET", "HPC_OTP"}, {"MLOPS_TRIGGER_TOKEN"}


@pytest.mark.parametrize(
    ("auth", "wandb", "expected"),
    [
        ("totp", "offline", KEY | CODES | TOKEN | {"WANDB_API_KEY"}),
        ("totp+password", "disabled", KEY | CODES | TOKEN | {"HPC_PASSWORD"}),
        ("key", "online", KEY | TOKEN | {"WANDB_API_KEY"}),
        ("command-key", "disabled", KEY | TOKEN),
    ],
)
def test_needed_follows_auth_and_wandb(auth, wandb, expected):
    assert {v.name for v in civars.needed(auth, wandb)} == expected


def test_scopes_per_cluster_and_shared():
    assert civars.BY_NAME[civars.TOTP].scope("uni") == "hpc/uni"
    assert civars.BY_NAME[civars.TRIGGER_TOKEN].scope("state") == "hpc/state"
    assert civars.BY_NAME[civars.WANDB].scope("uni") == "hpc/*"
