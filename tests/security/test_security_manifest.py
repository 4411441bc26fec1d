"""The protected-variable manifest: one definition (mlops.civars), and the pipeline reads exactly it.

Also: the post-gen hook never prompts or fails a non-interactive render, its output is deterministic,
strict mode turns problems into a failed render, and the secret scan / pre-commit config are there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops import civars, variables
from support.render import answers_for, render

VARIANTS = [
    {},
    {"hpc_auth": "key"},
    {"hpc_auth": "command-key"},
    {"wandb_mode": "disabled"},
    {"wandb_mode": "online", "hpc_auth": "key", "hpc_jump_host": "jump.example.org"},
]
PREDEFINED = re.compile(r"^(CI|GITLAB|FF|RUNNER)_|^(CI|GITLAB_CI|HOME|PATH)$")
SECRET_LIKE = re.compile(r"^HPC_|(_TOKEN|_SECRET|_API_KEY|_PASSWORD|_PRIVATE_KEY|_OTP)$")


class _Loader(yaml.SafeLoader):
    """GitLab YAML: `!reference [job, key]` is kept as a plain list."""


_Loader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def pipeline_docs(project: Path) -> list:
    docs = []
    for path in [project / ".gitlab-ci.yml", *sorted((project / ".gitlab" / "ci").glob("*.yml"))]:
        docs += [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if isinstance(d, dict)]
    return docs


def defined_in_pipeline(node, out: set) -> set:
    """Names the pipeline sets itself (`variables:` blocks anywhere)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "variables" and isinstance(value, dict):
                out |= set(value)
            defined_in_pipeline(value, out)
    elif isinstance(node, list):
        for item in node:
            defined_in_pipeline(item, out)
    return out


def read_by_yaml(project: Path) -> set:
    text = "\n".join(p.read_text() for p in [project / ".gitlab-ci.yml", *(project / ".gitlab" / "ci").glob("*.yml")])
    # `${NAME:-default}` is an optional knob with its default in place (e.g. MLOPS_TOOL_DIR), not a
    # variable the project must define; every other reference must be defined somewhere.
    text = re.sub(r"\$\{[A-Z_][A-Z0-9_]*:-[^}]*\}", "", text)
    refs = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", text))
    own = defined_in_pipeline(pipeline_docs(project), set())
    return {r for r in refs if not PREDEFINED.match(r) and r not in own}


def read_by_code(project: Path) -> set:
    """Secret-like environment names the mlops package reads: literals, or the civars constants it uses
    (`civars.TOTP`, `from ..civars import KEY`) resolved through the table module itself."""
    package = project / "src" / "mlops"
    constants = dict(
        re.findall(r"""^([A-Z][A-Z0-9_]*) = ["']([A-Z][A-Z0-9_]+)["']""", (package / "civars.py").read_text(), re.M)
    )
    names = set()
    for path in package.rglob("*.py"):  # the rooms are packages (mlops/ssh/, ...)
        if path.name == "civars.py":  # the table itself
            continue
        text = path.read_text()
        names |= {n for n in re.findall(r"""["']([A-Z][A-Z0-9_]{2,})["']""", text) if SECRET_LIKE.search(n)}
        used = set(re.findall(r"\bcivars\.([A-Z][A-Z0-9_]*)\b", text))
        for imported in re.findall(r"from \.+civars import ([^\n(]+)", text):
            used |= {n.strip() for n in imported.split("#")[0].split(",")}
        names |= {constants[c] for c in used if c in constants}
    return {n for n in names if not PREDEFINED.match(n)}


@pytest.fixture(scope="module")
def rendered_variants(tmp_path_factory):
    base = tmp_path_factory.mktemp("manifest")
    return [(v, render(base / str(i), **v)) for i, v in enumerate(VARIANTS)]


def test_definitions_respect_gitlab_rules():
    for v in civars.VARIABLES:
        assert v.kind in ("file", "env_var"), v.name
        assert not (v.hidden and not v.masked), f"{v.name}: hidden requires masked"
        assert not (v.kind == "file" and v.masked), f"{v.name}: a multi-line file cannot be masked"
        assert v.scope("uni") == ("hpc/uni" if v.per_cluster else "hpc/*"), v.name
        assert set(v.jobs) <= set(civars.CLUSTER_JOBS)
        assert v.auth and set(v.auth) <= set(civars.ALL_AUTH), v.name
    # the secrets of one cluster's account are per cluster; only the W&B key is shared by every cluster job
    assert {v.name for v in civars.VARIABLES if not v.per_cluster} == {civars.WANDB}
    assert variables.masking_problem("short") and variables.masking_problem("with space inside")
    assert variables.masking_problem("two\nlines here") and variables.masking_problem("A" * 32) is None


def test_manifest_lists_exactly_the_variables_of_the_options(rendered_variants):
    for variant, project in rendered_variants:
        doc = yaml.safe_load((project / ".gitlab" / "ci-variables.yml").read_text())
        expected = variables.for_answers(answers_for(variant))
        assert [e["name"] for e in doc["variables"]] == [v.name for v in expected], variant
        for entry, v in zip(doc["variables"], expected):
            assert set(entry) == {
                "name",
                "description",
                "type",
                "protected",
                "masked",
                "hidden",
                "raw",
                "environment_scope",
                "manual",
                "optional",
                "secret",
                "jobs",
            }  # never a value
            assert (entry["type"], entry["masked"], entry["hidden"], entry["protected"]) == (
                v.kind,
                v.masked,
                v.hidden,
                v.protected,
            )
        names = {e["name"] for e in doc["variables"]}
        assert ("HPC_TOTP_SECRET" in names) == (answers_for(variant)["hpc_auth"] == "totp"), variant
        assert ("WANDB_API_KEY" in names) == (answers_for(variant)["wandb_mode"] != "disabled"), variant


def test_pipeline_reads_exactly_the_manifest_variables(rendered_variants):
    """No more: every CI variable the YAML or the mlops code reads is in the manifest of its options.
    No fewer: every manifest variable is read, by jobs that exist and whose environment is in its scope."""
    all_read = set()
    for variant, project in rendered_variants:
        manifest = {
            e["name"]: e for e in yaml.safe_load((project / ".gitlab" / "ci-variables.yml").read_text())["variables"]
        }
        yaml_reads = read_by_yaml(project)
        assert yaml_reads <= set(manifest), (
            f"{variant}: the pipeline reads {yaml_reads - set(manifest)} which the manifest does not list"
        )
        code_reads = read_by_code(project) - {"GITLAB_TOKEN"}  # local-only: `mlops variables upload`
        assert code_reads <= {v.name for v in civars.VARIABLES}, code_reads
        all_read |= yaml_reads | code_reads
        jobs = {}
        for doc in pipeline_docs(project):
            jobs.update({k: v for k, v in doc.items() if isinstance(v, dict)})
        for entry in manifest.values():
            for job in entry["jobs"]:
                assert job in jobs, f"{entry['name']} names job {job!r}, which the pipeline does not have"
                env = jobs[job].get("environment") or jobs.get(jobs[job].get("extends", ""), {}).get("environment")
                name = env["name"] if isinstance(env, dict) else env
                assert name and re.fullmatch(
                    entry["environment_scope"].replace("*", ".*"), re.sub(r"\$\[\[.*?\]\]", "x", name)
                ), f"job {job} (environment {name!r}) cannot see {entry['name']} (scope {entry['environment_scope']})"
    assert {v.name for v in civars.VARIABLES} <= all_read, (
        f"listed but never read: {({v.name for v in civars.VARIABLES}) - all_read}"
    )


def test_hook_output_is_deterministic_and_never_prompts(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    outputs = []
    for i in range(2):
        render(tmp_path / str(i))
        outputs.append(capfd.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "checking this machine's credentials" in outputs[0] and "credentials:" in outputs[0]


def test_update_mode_writes_the_manifest_without_checking(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("MLOPS_RENDER_MODE", "update")
    project = render(tmp_path)
    assert (project / ".gitlab" / "ci-variables.yml").is_file()
    assert "credentials" not in capfd.readouterr().out


def test_strict_mode_fails_the_render_and_leaves_nothing(tmp_path, capfd, monkeypatch):
    from cookiecutter.exceptions import FailedHookException

    monkeypatch.setenv("MLOPS_STRICT_CREDENTIALS", "1")
    monkeypatch.setenv("HPC_SSH_PRIVATE_KEY", str(tmp_path / "no-such-key"))
    with pytest.raises(FailedHookException):
        render(tmp_path / "out")
    captured = capfd.readouterr()
    assert "MLOPS_STRICT_CREDENTIALS is set" in captured.err and "[MISSING] SSH key" in captured.out
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".cookiecutter-home"]


def test_secret_scan_job_and_pre_commit_are_wired(rendered_variants):
    _, project = rendered_variants[0]
    jobs = {}
    for doc in pipeline_docs(project):
        jobs.update(doc)
    scan = jobs["secret-scan"]
    assert "allow_failure" not in scan
    assert any("detect-secrets-hook --baseline .secrets.baseline" in line for line in scan["script"])
    hooks = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    assert {h["id"] for h in hooks} >= {"detect-secrets", "no-private-keys", "variables-manifest"}
    ignored = (project / ".gitignore").read_text()
    assert ".gitlab-ci-local-variables.yml" in ignored


def test_every_tracked_file_of_a_rendered_project_passes_its_own_secret_scan(rendered_variants):
    """The secret-scan job's command over `git ls-files` of fresh renders: the project's own code and tests
    (canaries, key headers, alphabets) are no finding, so the push pipeline can pass without a click on Retry."""
    hook = shutil.which("detect-secrets-hook") or pytest.fail(
        "detect-secrets is missing: pip install -r requirements-test.txt"
    )
    for answers, project in rendered_variants[:2]:
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
        subprocess.run(["git", "add", "-A"], cwd=project, check=True)
        tracked = subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True, check=True)
        files = tracked.stdout.split()
        assert "tests/test_smoke_sweep.py" in files and "src/mlops/ssh/codes.py" in files
        scan = subprocess.run(
            [hook, "--baseline", ".secrets.baseline", *files], cwd=project, capture_output=True, text=True
        )
        assert scan.returncode == 0, f"{answers}:\n{scan.stdout}{scan.stderr}"
