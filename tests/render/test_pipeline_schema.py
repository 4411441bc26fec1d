"""Every rendered CI file, for the whole option matrix, is valid for GitLab (its vendored JSON schema),
and the reusable job files can be included into an unrelated repo with its own jobs."""

from __future__ import annotations

import hashlib
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
    expected = {"lint", "params", "config", "tests", "build", "deploy", "collect", "cancel", "collect-triggered"}
    assert expected <= set(jobs)
    assert jobs["params"]["stage"] == "test" and jobs["lint"]["stage"] == "test"
    assert jobs["deploy"]["when"] == "manual"
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
    assert doc["deploy"]["resource_group"] == "hpc-bwuni"
    assert doc["deploy"]["environment"]["name"] == "hpc/bwuni"


@pytest.mark.skipif(not shutil.which("gitlab-ci-local"), reason="needs gitlab-ci-local 4.73.0 (npm)")
def test_a_triggered_pipeline_only_collects_and_a_scheduled_one_only_sweeps_up(tmp_path):
    """Rules per CI_PIPELINE_SOURCE (issue 12): a run's notification starts a pipeline with only
    collect-triggered; a schedule runs only collect-scheduled (+ the template check); a push never runs them."""
    from support import pipeline as ps

    project = render(tmp_path / "src")
    ps.git_init(project)
    home = tmp_path / "home"

    def runs(*variables):
        jobs = ps.list_jobs(project, home, "CI_COMMIT_REF_PROTECTED=true", *variables)
        return {name: job for name, job in jobs.items() if job["when"] != "never"}

    push = runs("CI_PIPELINE_SOURCE=push")
    assert {"params", "config", "tests", "build", "secret-scan", "deploy", "collect"} <= set(push)
    assert not {"collect-triggered", "collect-scheduled"} & set(push)
    triggered = runs("CI_PIPELINE_SOURCE=trigger")  # the notification sends no variables (contract E)
    assert set(triggered) == {"collect-triggered"}, sorted(triggered)
    assert not triggered["collect-triggered"].get("needs"), "no needs on jobs that do not run there"
    scheduled = runs("CI_PIPELINE_SOURCE=schedule")
    assert set(scheduled) == {"collect-scheduled", "template-check"}, sorted(scheduled)
    assert not scheduled["collect-scheduled"].get("needs")
