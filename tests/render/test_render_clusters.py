"""The cluster_name answer through a real render: mlops.toml's [clusters.NAME] block, the default,
the pipeline's cluster input, and what a second hand-written block does (issue 21, contract A)."""

import subprocess
import sys
import tomllib

import pytest
import yaml

from mlops import errors, settings
from support.render import render

CASES = [
    ({}, "hpc"),  # hpc.example.org
    ({"hpc_host": "Login02.Cluster.example.EDU"}, "login02"),
    ({"hpc_host": "127.0.0.1"}, "127"),  # an IP's first part: still a name, and text in YAML
    ({"hpc_host": "uc3.scc.kit.edu", "cluster_name": "bwuni"}, "bwuni"),
]


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    return [(render(tmp_path_factory.mktemp("c"), **answers), name) for answers, name in CASES]


def test_the_cluster_block_is_named_by_the_answer(projects):
    for project, name in projects:
        data = tomllib.loads((project / "mlops.toml").read_text())
        assert data["clusters"]["default"] == name and list(data["clusters"]) == ["default", name], name
        assert "cluster" not in data and "scheduler" not in data and "partition" not in data["notify"]
        s = settings.load(project)
        assert s.cluster.name == name and s.clusters == (name,) and s.answers()["cluster_name"] == name


def test_the_pipeline_includes_the_cluster_jobs_with_that_name_as_text(projects):
    for project, name in projects:
        ci = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
        cluster = next(i for i in ci["include"] if i["local"] == ".gitlab/ci/cluster.yml")
        assert cluster["inputs"]["cluster"] == name and isinstance(cluster["inputs"]["cluster"], str)


def test_a_second_block_added_by_hand_is_checked_and_selectable(projects):
    project, _ = projects[0]
    path = project / "mlops.toml"
    original = path.read_text()
    try:
        path.write_text(original + '\n[clusters.institute]\nhost = "10.1.2.3"\nuser = "jdoe"\nworkdir = "/srv/ml"\n'
                        'auth = "key"\nruntime = "podman"\nscheduler = "none"\n')  # fmt: skip
        s = settings.load(project, cluster="institute")
        assert s.clusters == ("hpc", "institute") and s.scheduler.kind == "none" and s.cluster.port == 22
        path.write_text(path.read_text().replace('auth = "key"\n', ""))
        with pytest.raises(errors.Problems, match=r"clusters\.institute\.auth \(hpc_auth\): is missing"):
            settings.load(project)
        proc = subprocess.run([sys.executable, "-m", "mlops", "config", "check"], cwd=project, capture_output=True,
                              text=True, env={"PYTHONPATH": str(project / "src"), "PATH": "/usr/bin:/bin"})  # fmt: skip
        assert proc.returncode == 2 and "clusters.institute.auth (hpc_auth): is missing" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        path.write_text(original)
