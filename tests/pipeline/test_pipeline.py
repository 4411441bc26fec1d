"""The rendered GitLab pipeline, executed: validate and build stages run for real in gitlab-ci-local.

buildah (chroot isolation, no privileges, no daemon) builds the params, data and model images from
a local debootstrap base image, pushes them to a real registry on 127.0.0.1 and hands the
.OCI layout images/oci/ to later jobs as artifacts; `podman pull oci:` reads it and the model image trains
one configuration. A second pipeline after a change to model/ only rebuilds the model image.
The tests in this module build on each other (one rendered project, one registry) and run in order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import pipeline as ps
from support.infra import baseimage
from support.infra.registry import LocalRegistry
from support.render import render

pytestmark = [
    pytest.mark.skipif(
        ps.gcl_version() != ps.GCL_VERSION,
        reason=f"needs gitlab-ci-local {ps.GCL_VERSION} (npm i -g gitlab-ci-local@{ps.GCL_VERSION}; "
        "4.74+ crash on Node 20)",
    ),
    pytest.mark.skipif(
        not shutil.which("buildah") or not shutil.which("podman"),
        reason="needs buildah and podman (apt-get install buildah podman)",
    ),
]
IMAGES = ("params", "data", "model")
# The default render's one cluster is named after hpc.example.org's first label.
CLUSTER_JOBS = tuple(
    f"{v}-hpc" for v in ("deploy", "status", "collect", "cancel", "collect-triggered", "collect-scheduled")
)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    """Shared with the e2e tier through scripts/test.sh's MLOPS_TEST_CACHE (base image, layer cache)."""
    return (
        Path(os.environ["MLOPS_TEST_CACHE"])
        if os.environ.get("MLOPS_TEST_CACHE")
        else tmp_path_factory.mktemp("mlops-cache")
    )


@pytest.fixture(scope="module")
def env(cache_root) -> dict:
    return ps.build_env(ps.store_env(cache_root))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def state(tmp_path_factory, cache_root):
    """What the ordered tests hand each other: the project, commits, the first manifest. The tool job
    downloads the locked wheels from a package index on 127.0.0.1 (PyPI's files, hash-checked)."""
    root = tmp_path_factory.mktemp("pipeline")
    project = render(root / "out")
    with ps.LocalIndex(ps.locked_wheels(project, cache_root)) as index:
        ps.use_index(project, index.url)
        yield {"project": project, "home": root / "gcl-home", "root": root, "sha1": ps.git_init(project)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _job_log(proc) -> str:
    return (proc.stdout + proc.stderr)[-6000:]


def test_first_pipeline_validates_builds_pushes_and_saves(state, env, registry):
    project = state["project"]
    proc, seconds = ps.run_pipeline(project, state["home"], env, registry.host)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, _job_log(proc)
    for job in ("tool", "params", "config", "tests", "build"):
        assert f"PASS  {job}" in out, f"{job} did not pass:\n{_job_log(proc)}"
    # Manual / protected-only jobs do not run unless a person asks for them.
    for job in CLUSTER_JOBS:
        assert not (project / ".gitlab-ci-local" / "builds" / job).exists(), f"{job} ran without a click"
        assert f"PASS  {job}" not in out and f"FAIL  {job}" not in out
    manifest = ps.manifest(project)
    state["manifest1"], state["seconds1"] = manifest, seconds
    assert set(manifest["images"]) == set(IMAGES) and manifest["builder"] == "buildah"
    for name in IMAGES:
        entry = manifest["images"][name]
        oci = ps.artifacts(project, "build") / entry["layout"]
        assert (oci / "index.json").is_file() and entry["oci_ref"] == name and entry["size"] > 10_000_000
        assert (oci / "blobs" / "sha256" / entry["manifest_digest"].split(":")[1]).is_file()
        assert entry["built"] is True and entry["digest"].startswith("sha256:")
        assert entry["registry_ref"] == f"{registry.host}/group/proj/{name}:{state['sha1']}"
        assert state["sha1"] in registry.tags(f"group/proj/{name}")
        assert entry["registry_digest"].startswith("sha256:")
        # The build cache holds the image under its input key, for the next pipeline.
        cache = project / ".gitlab-ci-local" / "cache"
        assert list(cache.rglob(f"{entry['input_key']}.json")), f"{name} not in the runner cache"


def test_the_layout_loads_and_the_model_image_trains_one_configuration(state, tmp_path):
    """`podman pull oci:` accepts the artifact (in a store of their own) and the stages run from them."""
    project, manifest = state["project"], state["manifest1"]
    store = baseimage.private_store(tmp_path / "store")
    try:
        _load_and_run(project, manifest, store, tmp_path)
    finally:  # leave no store (or its overlay mount) behind
        subprocess.run(["podman", "rmi", "-a", "-f"], env=store, capture_output=True, timeout=300)
        subprocess.run(["umount", str(tmp_path / "store" / "root" / "overlay")], capture_output=True)


def _load_and_run(project, manifest, store, tmp_path):
    refs = {}
    for name in IMAGES:
        oci = ps.artifacts(project, "build") / manifest["images"][name]["layout"]
        # The artifact is one OCI layout with the three images; podman reads it with the oci: transport.
        # podman names the image after the layout's path (it must be a valid reference): pull by a relative one
        pull = subprocess.run(
            ["podman", "pull", "-q", f"oci:{oci.name}:{name}"],
            cwd=oci.parent,
            env=store,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert pull.returncode == 0, pull.stderr
        image_id = pull.stdout.strip().splitlines()[-1]
        assert f"sha256:{image_id}" == manifest["images"][name]["digest"]
        refs[name] = image_id
    run = tmp_path / "run"
    run.mkdir()
    os.chmod(run, 0o777)  # the images run as uid 1000

    def podman_run(name, *extra):
        proc = subprocess.run(
            ["podman", "run", "--rm", "--network", "none", "-v", f"{run}:/project", *extra, refs[name]],
            env=store,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{name}: {proc.stdout}\n{proc.stderr}"

    podman_run("params", "-e", "RUN_ID=pipeline-test", "-e", "WANDB_MODE=disabled")
    index = json.loads((run / "envs" / "index.json").read_text())
    first = index["configurations"][0]["config_id"]
    podman_run("data")
    assert any((run / "data").iterdir())
    podman_run("model", "--env-file", str(run / "envs" / f"{first}.env"))
    metrics = json.loads((run / "results" / first / "metrics.json").read_text())
    assert metrics, "the model wrote empty metrics"


def test_second_pipeline_after_a_model_change_rebuilds_only_the_model(state, env, registry):
    project, first = state["project"], state["manifest1"]
    with (project / "model" / "train.py").open("a") as fh:
        fh.write("\n# a change to the model only\n")
    state["sha2"] = sha2 = ps.git_commit(project, "change the model")
    # The build stage of the new pipeline (the validate stage is the same as in the first test).
    proc = ps.gcl(project, state["home"], "--stage", "build", env=env, registry_host=registry.host)
    assert proc.returncode == 0, _job_log(proc)
    second = ps.manifest(project)
    state["manifest2"] = second
    built = {name: second["images"][name]["built"] for name in IMAGES}
    assert built == {"params": False, "data": False, "model": True}, built
    for name in ("params", "data"):
        a, b = first["images"][name], second["images"][name]
        assert (a["input_key"], a["digest"]) == (b["input_key"], b["digest"])
        # Not re-saved: the same OCI manifest (so the same blobs) as in the first pipeline.
        assert b["manifest_digest"] == a["manifest_digest"]
        # This commit's tag exists and points at the same manifest (a copy, no rebuild).
        assert sha2 in registry.tags(f"group/proj/{name}")
        assert b["registry_digest"] == a["registry_digest"]
    assert second["images"]["model"]["input_key"] != first["images"]["model"]["input_key"]
    # Two commits, one built again: every layer below the code keeps its digest (nothing per-commit
    # sits under the code layer), so a deploy ships only the code layer, config and manifest.
    layers1, layers2 = first["images"]["model"]["layers"], second["images"]["model"]["layers"]
    assert layers2[:-1] == layers1[:-1] and layers2[-1] != layers1[-1], (layers1, layers2)
    assert sha2 in registry.tags("group/proj/model")
    print({name: second["images"][name]["seconds"] for name in IMAGES})


def test_cluster_jobs_are_manual_and_only_on_protected_refs(state):
    project, home = state["project"], state["home"]
    unprotected = ps.list_jobs(project, home)
    for job in CLUSTER_JOBS:
        assert unprotected[job]["when"] == "never", (job, unprotected[job])
    protected = ps.list_jobs(project, home, "CI_COMMIT_REF_PROTECTED=true")
    for job in ("deploy-hpc", "status-hpc", "collect-hpc", "cancel-hpc"):
        assert protected[job]["when"] == "manual", (job, protected[job])
    assert protected["collect-triggered-hpc"]["when"] == "never"
    assert protected["collect-scheduled-hpc"]["when"] == "never"
    assert protected["build"]["when"] == "on_success"
