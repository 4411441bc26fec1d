"""Every rendered CI file, for the whole option matrix, is valid for GitLab (its vendored JSON schema),
and the reusable job files can be included into an unrelated repo with its own jobs."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.render import render, variant_id, variants

CHECK = [
    sys.executable,
    "-m",
    "check_jsonschema",
    "--builtin-schema",
    "vendor.gitlab-ci",
    "--data-transform",
    "gitlab-ci",
]


class _Loader(yaml.SafeLoader):
    """safe_load_all plus GitLab's !reference tag (kept as a plain list)."""


_Loader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def _split_documents(path: Path, out_dir: Path) -> list[Path]:
    """A file with a `spec:` header has two YAML documents: check each one on its own."""
    text = path.read_text()
    docs = text.split("\n---\n") if "\n---\n" in text else [text]
    out = []
    for i, doc in enumerate(docs):
        list(yaml.load_all(doc, Loader=_Loader))  # each part must be YAML by itself
        target = out_dir / f"{hashlib.sha256(doc.encode()).hexdigest()[:16]}-{i}-{path.name}"
        target.write_text(doc)
        out.append(target)
    return out


def _ci_files(project: Path) -> list[Path]:
    return [project / ".gitlab-ci.yml", *sorted((project / ".gitlab" / "ci").glob("*.yml"))]


def test_every_rendered_ci_file_passes_gitlabs_schema(tmp_path):
    docs: dict[str, Path] = {}
    for i, variant in enumerate(variants()):
        project = render(tmp_path / f"v{i}", **variant)
        for path in _ci_files(project):
            for doc in _split_documents(path, tmp_path):
                docs.setdefault(doc.read_text(), doc)  # identical documents are checked once
        text = (project / ".gitlab-ci.yml").read_text()
        assert 'builder: "' + (variant.get("image_builder") or "buildah") + '"' in text, variant_id(variant)
    proc = subprocess.run([*CHECK, *map(str, docs.values())], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(docs) >= 6


def test_the_schema_check_catches_a_broken_job(tmp_path):
    """The check above can fail: a job with an invalid `when` is rejected."""
    bad = tmp_path / "bad.yml"
    bad.write_text("deploy:\n  script: [mlops deploy]\n  when: sometimes\n")
    proc = subprocess.run([*CHECK, str(bad)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0


OTHER_REPO_CI = """\
# An unrelated repo: its own job plus the reusable mlops job files with its own inputs.
stages:
  - test
  - build
  - deploy
  - run
  - collect
include:
  - local: ci/mlops/tool.yml
  - local: ci/mlops/validate.yml
    inputs:
      stage: test
  - local: ci/mlops/build.yml
    inputs:
      builder: kaniko
      registry_image: registry.example.org/other/images
      cache_key: other-images
  - local: ci/mlops/cluster.yml
    inputs:
      cluster: bwuni
lint:
  stage: test
  script:
    - echo "the repo's own job"
"""


@pytest.mark.skipif(not shutil.which("gitlab-ci-local"), reason="needs gitlab-ci-local 4.73.0 (npm)")
def test_job_files_included_into_another_repo_validate_and_list(tmp_path):
    from support import pipeline as ps

    project = render(tmp_path / "src")
    other = tmp_path / "other"
    (other / "ci" / "mlops").mkdir(parents=True)
    for path in (project / ".gitlab" / "ci").glob("*.yml"):
        shutil.copy(path, other / "ci" / "mlops" / path.name)
    (other / ".gitlab-ci.yml").write_text(OTHER_REPO_CI)
    ps.git_init(other)
    jobs = ps.list_jobs(other, tmp_path / "home", "CI_COMMIT_REF_PROTECTED=true")
    expected = {"lint", "tool", "params", "config", "tests", "build", "deploy-bwuni", "collect-bwuni", "cancel-bwuni"}
    assert expected <= set(jobs)
    assert jobs["params"]["stage"] == "test" and jobs["lint"]["stage"] == "test"
    assert jobs["deploy-bwuni"]["when"] == "manual"
    preview = subprocess.run(
        ["gitlab-ci-local", "--preview", "--home", str(tmp_path / "home")],
        cwd=other,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert preview.returncode == 0, preview.stderr
    doc = yaml.load(
        preview.stdout[preview.stdout.find("---") :] if "---" in preview.stdout else preview.stdout, Loader=_Loader
    )
    build = doc["build"]
    assert (
        "kaniko" in str(build["image"])
        and build["variables"]["MLOPS_REGISTRY_IMAGE"] == "registry.example.org/other/images"
    )
    assert (
        build["cache"][0]["key"] == "other-images-kaniko"
        if isinstance(build["cache"], list)
        else build["cache"]["key"] == "other-images-kaniko"
    )
    assert doc["deploy-bwuni"]["resource_group"] == "hpc-bwuni"
    assert doc["deploy-bwuni"]["environment"]["name"] == "hpc/bwuni"
    assert doc["deploy-bwuni"]["script"][0].startswith(". .gitlab/ci/job.sh click launch --cluster bwuni ")


@pytest.mark.skipif(not shutil.which("gitlab-ci-local"), reason="needs gitlab-ci-local 4.73.0 (npm)")
def test_a_triggered_pipeline_only_collects_and_a_scheduled_one_only_sweeps_up(tmp_path):
    """Rules per CI_PIPELINE_SOURCE (issues 12, 17): a run's notification starts a pipeline with only the
    tool job and collect-triggered-NAME; a schedule runs only collect-scheduled-NAME (+ tool and the
    template check); a push never runs them."""
    from support import pipeline as ps

    project = render(tmp_path / "src")
    ps.git_init(project)
    home = tmp_path / "home"

    def runs(*variables):
        jobs = ps.list_jobs(project, home, "CI_COMMIT_REF_PROTECTED=true", *variables)
        return {name: job for name, job in jobs.items() if job["when"] != "never"}

    push = runs("CI_PIPELINE_SOURCE=push")
    assert {"tool", "params", "config", "tests", "build", "secret-scan", "deploy-hpc", "collect-hpc"} <= set(push)
    assert not {"collect-triggered-hpc", "collect-scheduled-hpc"} & set(push)
    # a trigger needs no variables at all (the notification sends only token and ref)
    triggered = runs("CI_PIPELINE_SOURCE=trigger")
    assert set(triggered) == {"tool", "collect-triggered-hpc"}, sorted(triggered)
    assert [n["job"] for n in triggered["collect-triggered-hpc"]["needs"]] == ["tool"]
    scheduled = runs("CI_PIPELINE_SOURCE=schedule")
    assert set(scheduled) == {"tool", "collect-scheduled-hpc", "template-check"}, sorted(scheduled)
    assert [n["job"] for n in scheduled["collect-scheduled-hpc"]["needs"]] == ["tool"]


def _expanded_jobs(project: Path, home: Path) -> dict:
    """The pipeline as GitLab would run it (inputs interpolated, includes merged): gitlab-ci-local --preview."""
    proc = subprocess.run(
        ["gitlab-ci-local", "--preview", "--home", str(home)], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout[proc.stdout.find("---") :] if "---" in proc.stdout else proc.stdout
    return {k: v for k, v in yaml.load(text, Loader=_Loader).items() if isinstance(v, dict) and "script" in v}


@pytest.mark.skipif(not shutil.which("gitlab-ci-local"), reason="needs gitlab-ci-local 4.73.0 (npm)")
def test_two_clusters_render_a_click_each_and_every_secret_job_starts_from_job_sh(tmp_path):
    """`mlops ci write` for two clusters (contract F, issue 21): the pipeline lists deploy/status/collect/
    cancel/collect-triggered/collect-scheduled per cluster with its own resource group, environment and
    a literal --cluster NAME; every job with an hpc/* environment (the only ones that get the cluster's
    variables) has `. .gitlab/ci/job.sh` as its first line and after_script line, and needs the tool
    job; no job reads MLOPS_RUN_ID or MLOPS_TRIGGER; every file passes GitLab's schema."""
    from mlops import ci
    from support import pipeline as ps

    project = render(tmp_path / "src")
    assert ci.write(project, ["uni", "bw-hpc"])
    ps.git_init(project)
    docs = [d for path in _ci_files(project) for d in _split_documents(path, tmp_path)]
    proc = subprocess.run([*CHECK, *map(str, docs)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = _expanded_jobs(project, tmp_path / "home")
    verbs = ("deploy", "status", "collect", "cancel", "collect-triggered", "collect-scheduled")
    for name in ("uni", "bw-hpc"):
        for verb in verbs:
            job = jobs[f"{verb}-{name}"]
            assert job["resource_group"] == f"hpc-{name}" and job["environment"]["name"] == f"hpc/{name}"
            assert f" --cluster {name}" in job["script"][0], job["script"]
    secret = {n: j for n, j in jobs.items() if str((j.get("environment") or {}).get("name", "")).startswith("hpc/")}
    assert len(secret) == 2 * len(verbs)
    for name, job in secret.items():
        assert job["script"][0].startswith(". .gitlab/ci/job.sh "), (name, job["script"])
        for line in job.get("after_script") or []:
            assert re.match(r'if \[ "\$CI_JOB_STATUS" = "canceled" \]; then \. \.gitlab/ci/job\.sh ', line), line
        assert "tool" in [n["job"] if isinstance(n, dict) else n for n in job["needs"]], name
    text = "\n".join(p.read_text() for p in _ci_files(project))
    assert "MLOPS_RUN_ID" not in text and "MLOPS_TRIGGER:" not in text and "MLOPS_TRIGGER ==" not in text
    assert "MLOPS_TOOL_DIR" not in text and "CI_API_V4_URL" not in text
