"""The protected-variable manifest: one definition (mlops.civars), and the pipeline reads exactly it.

Also: the post-gen hook never prompts or fails a non-interactive render, its output is deterministic,
strict mode turns problems into a failed render, and the secret scan / pre-commit config are there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from mlops import civars
from mlops.credentials import shapes
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
    assert shapes.masking_problem("short") and shapes.masking_problem("with space inside")
    assert shapes.masking_problem("two\nlines here") and shapes.masking_problem("A" * 32) is None


ENTRY_KEYS = {
    "name",
    "cluster",
    "environment_scope",
    "description",
    "type",
    "protected",
    "masked",
    "hidden",
    "raw",
    "manual",
    "optional",
    "secret",
    "jobs",
}
# A second and a third cluster, as a user adds them (README "Several clusters"): key login, and code + password.
MORE_CLUSTERS = (
    '\n[clusters.state]\nhost = "uc3.scc.kit.edu"\nuser = "ab_cd1234"\nworkdir = "/pfs/ws"\nauth = "key"\n'
    'runtime = "podman"\nscheduler = "none"\n'
    '\n[clusters.bw]\nhost = "bwunicluster.example.org"\nuser = "ab_cd1234"\nworkdir = "/pfs/ws"\n'
    'auth = "totp+password"\nruntime = "apptainer"\nscheduler = "slurm"\n'
)


def add_clusters(project: Path) -> Path:
    """Append MORE_CLUSTERS to mlops.toml and regenerate the pipeline's include list and the manifest."""
    with (project / "mlops.toml").open("a") as f:
        f.write(MORE_CLUSTERS)
    for argv in (["ci", "write"], ["variables", "write"]):
        subprocess.run(
            [sys.executable, "-m", "mlops", *argv],
            cwd=project,
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(project / "src")},
        )
    return project


def clusters_of(project: Path) -> dict[str, str]:
    """name -> auth of every cluster block of the project's mlops.toml (read by tomllib, the oracle)."""
    blocks = tomllib.loads((project / "mlops.toml").read_text())["clusters"]
    return {name: block["auth"] for name, block in blocks.items() if isinstance(block, dict)}


def test_manifest_lists_each_cluster_secret_once_per_cluster_and_shared_ones_once(rendered_variants):
    for variant, project in rendered_variants:
        doc = yaml.safe_load((project / ".gitlab" / "ci-variables.yml").read_text())
        toml = tomllib.loads((project / "mlops.toml").read_text())
        wandb = toml["wandb"]["mode"]
        expected = []
        for name, auth in clusters_of(project).items():
            expected += [(v.name, name, f"hpc/{name}") for v in civars.needed(auth, wandb) if v.per_cluster]
        expected += [(civars.WANDB, "*", "hpc/*")] if wandb != "disabled" else []
        assert [(e["name"], e["cluster"], e["environment_scope"]) for e in doc["variables"]] == expected, variant
        for entry in doc["variables"]:
            assert set(entry) == ENTRY_KEYS  # never a value
            v = civars.BY_NAME[entry["name"]]
            assert (entry["type"], entry["masked"], entry["hidden"], entry["protected"], entry["manual"]) == (
                v.kind,
                v.masked,
                v.hidden,
                v.protected,
                v.manual,
            )
            clusters = clusters_of(project) if entry["cluster"] == "*" else [entry["cluster"]]
            assert entry["jobs"] == [f"{job}-{c}" for c in clusters for job in v.jobs]
        names = {e["name"] for e in doc["variables"]}
        auth = answers_for(variant)["hpc_auth"]
        assert ("HPC_TOTP_SECRET" in names) == ("HPC_OTP" in names) == (auth in ("totp", "totp+password")), variant
        assert ("HPC_PASSWORD" in names) == (auth == "totp+password"), variant
        assert ("WANDB_API_KEY" in names) == (wandb != "disabled"), variant


def test_two_more_clusters_get_their_own_scopes(rendered_variants, tmp_path):
    project = add_clusters(shutil.copytree(rendered_variants[0][1], tmp_path / "p", symlinks=True))
    doc = yaml.safe_load((project / ".gitlab" / "ci-variables.yml").read_text())
    by_scope: dict[str, set] = {}
    for e in doc["variables"]:
        by_scope.setdefault(e["environment_scope"], set()).add(e["name"])
    first = next(iter(clusters_of(project)))
    own = {"HPC_SSH_PRIVATE_KEY", "HPC_TOTP_SECRET", "HPC_OTP", "MLOPS_TRIGGER_TOKEN"}
    assert by_scope[f"hpc/{first}"] == own  # host keys are the committed .gitlab/known_hosts, not a variable
    assert "HPC_TOTP_SECRET" not in by_scope["hpc/state"] and "HPC_OTP" not in by_scope["hpc/state"]
    assert {"HPC_TOTP_SECRET", "HPC_OTP", "HPC_PASSWORD"} <= by_scope["hpc/bw"]
    assert by_scope["hpc/*"] == {"WANDB_API_KEY"}
    check_pipeline_reads_the_manifest("three clusters", project)


def check_pipeline_reads_the_manifest(variant, project: Path) -> set:
    """No more: every CI variable the YAML or the mlops code reads is in the manifest. And every manifest
    entry names jobs that exist (cluster.yml included once per cluster with its `cluster` input), whose
    environment lies in the entry's scope. Returns the names read."""
    manifest = yaml.safe_load((project / ".gitlab" / "ci-variables.yml").read_text())["variables"]
    names = {e["name"] for e in manifest}
    yaml_reads = read_by_yaml(project)
    assert yaml_reads <= names, f"{variant}: the pipeline reads {yaml_reads - names} which the manifest does not list"
    code_reads = read_by_code(project) - {"GITLAB_TOKEN"}  # local-only: `mlops variables upload`
    assert code_reads <= {v.name for v in civars.VARIABLES}, code_reads
    templates: dict = {}
    for doc in pipeline_docs(project):
        templates.update({k: v for k, v in doc.items() if isinstance(v, dict)})
    included = [
        inc["inputs"]["cluster"]
        for inc in yaml.load((project / ".gitlab-ci.yml").read_text(), Loader=_Loader)["include"]
        if inc.get("local") == ".gitlab/ci/cluster.yml"
    ]
    assert sorted(included) == sorted(clusters_of(project)), "mlops ci write: one include per cluster"
    jobs = {}
    for cluster in included:
        for name, job in templates.items():
            jobs[name.replace("$[[ inputs.cluster ]]", cluster)] = (job, cluster)
    for entry in manifest:
        for name in entry["jobs"]:
            assert name in jobs, f"{entry['name']} names job {name!r}, which the pipeline does not have"
            job, cluster = jobs[name]
            env = job.get("environment") or templates.get(job.get("extends", ""), {}).get("environment")
            env_name = (env["name"] if isinstance(env, dict) else env).replace("$[[ inputs.cluster ]]", cluster)
            scope = entry["environment_scope"]
            assert re.fullmatch(scope.replace("*", ".*"), env_name), f"job {name} ({env_name}) cannot see {scope}"
            if entry["cluster"] != "*":
                assert env_name == f"hpc/{entry['cluster']}", f"{entry['name']} of {entry['cluster']} in {name}"
    return yaml_reads | code_reads


def test_pipeline_reads_exactly_the_manifest_variables(rendered_variants):
    """No more (check_pipeline_reads_the_manifest); no fewer: every variable of the table is read somewhere."""
    all_read = set()
    for variant, project in rendered_variants:
        all_read |= check_pipeline_reads_the_manifest(variant, project)
    assert {v.name for v in civars.VARIABLES} <= all_read, (
        f"listed but never read: {({v.name for v in civars.VARIABLES}) - all_read}"
    )


def _no_credentials(monkeypatch, home: Path) -> None:
    """A machine with no account anywhere (the demo, a CI render): empty HOME, no HPC_* or token variable."""
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    for name in ("CI", "GITLAB_CI", "MLOPS_STRICT_CREDENTIALS", *civars.BY_NAME, civars.GITLAB_TOKEN):
        monkeypatch.delenv(name, raising=False)


def without_first_commit(out: str) -> str:
    """The hook's output less the line of the render's first commit (its hash differs per render)."""
    return "".join(line for line in out.splitlines(True) if "a git repository with a first commit" not in line)


def test_hook_is_one_quiet_line_without_any_credential(tmp_path, capfd, monkeypatch):
    """Issue 19: a render on a machine without an account (the demo) is not a list of problems."""
    _no_credentials(monkeypatch, tmp_path / "home")
    outputs = []
    for i in range(2):
        render(tmp_path / str(i))
        captured = capfd.readouterr()
        outputs.append(captured._replace(out=without_first_commit(captured.out)))
    assert outputs[0].out == outputs[1].out
    assert outputs[0].out.strip() == (
        "mlops-template: no credentials of cluster hpc on this machine (nothing checked); when you have them: "
        "`mlops check-credentials` (README: Credentials)"
    )
    assert "problem" not in outputs[0].out + outputs[0].err


def test_hook_checks_when_a_credential_is_there_deterministic_and_never_prompts(tmp_path, capfd, monkeypatch):
    _no_credentials(monkeypatch, tmp_path / "home")
    key = tmp_path / "home" / "id_ci"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    monkeypatch.setenv("HPC_SSH_PRIVATE_KEY", str(key))
    outputs = []
    for i in range(2):
        render(tmp_path / str(i))
        outputs.append(without_first_commit(capfd.readouterr().out))
    assert outputs[0] == outputs[1]
    out = outputs[0]
    assert "checking this machine's credentials for cluster hpc" in out and "[PASS] SSH key" in out
    assert "[MISSING] TOTP secret ($HPC_TOTP_SECRET): not set" in out  # no prompt: nobody at a terminal
    assert "credentials: 2 problem(s)" in out  # the TOTP secret and the pinned host key


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
