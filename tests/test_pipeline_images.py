"""mlops.images without building anything: input keys, builder command lines, settings errors."""
from __future__ import annotations

import json

import pytest

from conftest import render
from mlops import images, stages

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return render(tmp_path_factory.mktemp("images"))


def test_a_key_changes_only_with_its_own_inputs(project):
    base = "localhost/python-base:3.11"
    before = {s.name: images.input_key(project, s, base) for s in stages.STAGES}
    (project / "model" / "__pycache__").mkdir(exist_ok=True)
    (project / "model" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"noise")
    assert {s.name: images.input_key(project, s, base) for s in stages.STAGES} == before
    train = project / "model" / "train.py"
    train.write_text(train.read_text() + "\n# changed\n")
    after = {s.name: images.input_key(project, s, base) for s in stages.STAGES}
    assert after["model"] != before["model"] and after["params"] == before["params"] \
        and after["data"] == before["data"]
    src = project / "src" / "mlops" / "params.py"
    src.write_text(src.read_text() + "\n")
    assert images.input_key(project, stages.BY_NAME["params"], base) != after["params"]
    assert images.input_key(project, stages.BY_NAME["data"], "python:3.12-slim") != after["data"]


@pytest.mark.parametrize("builder", images.BUILDERS)
def test_each_builder_gets_a_command_line_without_secrets(project, builder, monkeypatch):
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", "canary-password-123")
    monkeypatch.setenv("CI_COMMIT_SHA", "a" * 40)
    s = images.Settings(root=project, builder=builder, base_image="python:3.11-slim",
                        registry_image="registry.example.org/g/p", tag="a" * 40, out_dir=project / "images",
                        cache_dir=project / ".mlops-cache/images", extra_args=["--extra"], commit="a" * 40,
                        source_url="https://gitlab.example.com/g/p")
    target = images.Target(stages.BY_NAME["model"], "k" * 64, "localhost/p-model:kkkk",
                           "registry.example.org/g/p/model:" + "a" * 40, project / "images/model.tar")
    argvs = images.BUILDER_CLASSES[builder](s).argv(target)
    flat = " ".join(" ".join(a) for a in argvs)
    assert "canary-password-123" not in flat
    assert "BASE_IMAGE=python:3.11-slim" in flat and "--extra" in flat
    assert str(target.tar) in flat and target.remote_ref in flat
    assert "--tls-verify=false" not in flat and "insecure" not in flat   # TLS stays on off-loopback


def test_plain_http_only_on_loopback():
    assert images.is_loopback("127.0.0.1:5000") and images.is_loopback("localhost:5000")
    assert not images.is_loopback("registry.gitlab.com") and not images.is_loopback("10.0.0.1:5000")
    assert images.split_ref("127.0.0.1:5000/g/p/model:abc") == ("127.0.0.1:5000", "g/p/model", "abc")


def test_a_builder_that_differs_from_mlops_toml_is_refused(project, capsys):
    from mlops import cli
    import os
    cwd = os.getcwd()
    os.chdir(project)
    try:
        rc = cli.main(["build", "--builder", "kaniko", "--no-push"])
    finally:
        os.chdir(cwd)
    assert rc == 2
    err = capsys.readouterr().err
    assert "build.builder" in err and "Fix:" in err
    assert not (project / "images" / images.MANIFEST).exists()


def test_images_keys_lists_every_stage(project, capsys):
    from mlops import cli
    import os
    cwd = os.getcwd()
    os.chdir(project)
    try:
        assert cli.main(["images", "keys"]) == 0
    finally:
        os.chdir(cwd)
    lines = capsys.readouterr().out.split("\n")
    assert [l.split("\t")[0] for l in lines if l] == [s.name for s in stages.STAGES]


def test_archive_image_id_reads_a_docker_archive(tmp_path):
    import io
    import tarfile
    tar = tmp_path / "x.tar"
    with tarfile.open(tar, "w") as archive:
        data = json.dumps([{"Config": "abc123.json", "RepoTags": ["x:y"], "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    assert images.archive_image_id(tar) == "sha256:abc123"
