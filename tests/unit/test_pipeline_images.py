"""mlops.images without building anything: input keys, builder command lines, settings errors, OCI layouts,
the blob store's plan (which blobs to send) and its shell script."""

from __future__ import annotations

import json

import pytest

from mlops import images, rundir, stages
from mlops.images import builders, layout, registry, scripts, store
from mlops.images.keys import input_key
from support.render import render


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return render(tmp_path_factory.mktemp("images"))


def test_a_key_changes_only_with_its_own_inputs(project):
    base = "localhost/python-base:3.11"
    before = {s.name: input_key(project, s, base) for s in stages.STAGES}
    (project / "model" / "__pycache__").mkdir(exist_ok=True)
    (project / "model" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"noise")
    assert {s.name: input_key(project, s, base) for s in stages.STAGES} == before
    train = project / "model" / "train.py"
    train.write_text(train.read_text() + "\n# changed\n")
    after = {s.name: input_key(project, s, base) for s in stages.STAGES}
    assert after["model"] != before["model"] and after["params"] == before["params"] and after["data"] == before["data"]
    src = project / "src" / "mlops" / "params.py"
    src.write_text(src.read_text() + "\n")
    assert input_key(project, stages.BY_NAME["params"], base) != after["params"]
    assert input_key(project, stages.BY_NAME["data"], "python:3.12-slim") != after["data"]


@pytest.mark.parametrize("builder", builders.BUILDERS)
def test_each_builder_gets_a_command_line_without_secrets(project, builder, monkeypatch):
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", "canary-password-123")
    monkeypatch.setenv("CI_COMMIT_SHA", "a" * 40)
    s = images.BuildOptions(
        root=project,
        builder=builder,
        base_image="python:3.11-slim",
        registry_image="registry.example.org/g/p",
        tag="a" * 40,
        out_dir=project / "images",
        cache_dir=project / ".mlops-cache/images",
        extra_args=["--extra"],
        commit="a" * 40,
        source_url="https://gitlab.example.com/g/p",
    )
    target = builders.Target(
        stages.BY_NAME["model"],
        "k" * 64,
        "localhost/p-model:kkkk",
        "registry.example.org/g/p/model:" + "a" * 40,
        project / "images/model.tar",
    )
    argvs = builders.BUILDER_CLASSES[builder](s).argv(target)
    flat = " ".join(" ".join(a) for a in argvs)
    assert "canary-password-123" not in flat
    assert "BASE_IMAGE=python:3.11-slim" in flat and "--extra" in flat
    assert str(target.tar) in flat and target.remote_ref in flat
    assert "--tls-verify=false" not in flat and "insecure" not in flat  # TLS stays on off-loopback


def test_plain_http_only_on_loopback():
    assert registry.is_loopback("127.0.0.1:5000") and registry.is_loopback("localhost:5000")
    assert not registry.is_loopback("registry.gitlab.com") and not registry.is_loopback("10.0.0.1:5000")
    assert registry.split_ref("127.0.0.1:5000/g/p/model:abc") == ("127.0.0.1:5000", "g/p/model", "abc")


def test_a_builder_that_differs_from_mlops_toml_is_refused(project, capsys):
    import os

    from mlops import cli

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
    import os

    from mlops import cli

    cwd = os.getcwd()
    os.chdir(project)
    try:
        assert cli.main(["images", "keys"]) == 0
    finally:
        os.chdir(cwd)
    lines = capsys.readouterr().out.split("\n")
    assert [line.split("\t")[0] for line in lines if line] == [s.name for s in stages.STAGES]


def _docker_archive(path, layers: list[bytes], config_extra: dict | None = None):
    """A minimal docker-archive (the `docker save` format every builder writes)."""
    import hashlib
    import io
    import tarfile

    config = json.dumps(
        {
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(b).hexdigest() for b in layers]},
            **(config_extra or {}),
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    members = {config_name: config, **{f"l{i}/layer.tar": b for i, b in enumerate(layers)}}
    members["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": ["x:y"], "Layers": [f"l{i}/layer.tar" for i in range(len(layers))]}]
    ).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return "sha256:" + config_name.removesuffix(".json")


def test_docker_archives_become_one_layout_where_shared_and_unchanged_layers_keep_their_digest(tmp_path):
    oci = tmp_path / "oci"
    deps, code1, code2 = b"d" * 300_000, b"print(1)\n" * 10, b"print(2)\n" * 10
    id1 = _docker_archive(tmp_path / "a.tar", [deps, code1])
    first = layout.import_docker_archive(tmp_path / "a.tar", oci, "model")
    assert first["digest"] == id1 and len(first["layers"]) == 2
    id2 = _docker_archive(tmp_path / "b.tar", [deps, code2], {"created": "later"})
    second = layout.import_docker_archive(tmp_path / "b.tar", oci, "model2")
    assert second["digest"] == id2 and second["layers"][0] == first["layers"][0]  # the dependency layer
    assert second["layers"][1] != first["layers"][1]
    # read back: the manifest names config then layers; every blob verified by its digest
    blobs = layout.image_blobs(oci, layout.resolve(oci, "model2"))
    assert [b.digest for b in blobs[1:]] == [id2, *second["layers"]]
    assert sum(b.size for b in blobs) == second["size"]
    # the same archive gives the same bytes (gzip without a timestamp): a rebuild ships nothing new
    again = layout.import_docker_archive(tmp_path / "a.tar", tmp_path / "other", "model")
    assert again["manifest_digest"] == first["manifest_digest"]
    # a corrupt blob is refused, never read as the image
    path = layout.blob_path(oci, blobs[0].digest)
    path.write_bytes(path.read_bytes().replace(b"layers", b"LAYERS"))
    with pytest.raises(images.BuildError, match="does not match"):
        layout.image_blobs(oci, layout.resolve(oci, "model2"))
    with pytest.raises(images.BuildError, match="no image 'nope'"):
        layout.resolve(oci, "nope")
    with pytest.raises(ValueError):
        layout.digest_hex("sha256:../../etc/passwd")


def test_the_store_sends_only_missing_blobs_resumes_parts_and_rechecks_changed_ones():
    h = [c * 64 for c in "abcdef"]
    blobs = [layout.Blob("sha256:" + x, 100) for x in h]
    facts = store.parse_facts(
        "\n".join(
            [
                f"{h[0]} final 100 1700000000 100 1700000000",  # verified, unchanged: nothing to do
                f"{h[1]} final 100 1700000099 100 1700000000",  # changed since verified: hash again
                f"{h[2]} part 40",  # cut upload: resume at byte 40
                f"{h[3]} none",  # missing: send whole
                f"{h[4]} final 7 1700000000 7 1700000000",  # wrong size: send again
                f"{h[5]} part 400",  # longer than the blob: start over
            ]
        )
    )
    check, upload = store.plan(blobs, facts)
    assert check == [h[1]]
    assert upload == {h[2]: 40, h[3]: 0, h[4]: 0, h[5]: 0}
    assert store.plan(blobs[:1], facts) == ([], {})  # all present: 0 bytes


def test_store_script_is_strict_bash_and_refuses_names_that_are_not_digests(tmp_path):
    import subprocess

    script = tmp_path / "store.sh"
    script.write_bytes(scripts.text("store.sh"))
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    bad = subprocess.run(["bash", str(script), "facts", str(tmp_path / "s"), "../../x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "bad digest" in bad.stderr
    data = b"blob"
    import hashlib

    hexd = hashlib.sha256(data).hexdigest()
    s = tmp_path / "s"
    (s / "blobs/sha256").mkdir(parents=True)
    (s / "verified").mkdir()
    (s / f"blobs/sha256/{hexd}.part").write_bytes(data)
    (s / f"blobs/sha256/{'0' * 64}.part").write_bytes(b"corrupt")
    out = subprocess.run(["bash", str(script), "commit", str(s), hexd, "0" * 64], capture_output=True, text=True)
    assert out.stdout.split("\n")[:2] == [f"{hexd} ok", f"{'0' * 64} bad"]
    assert (s / f"blobs/sha256/{hexd}").read_bytes() == data and not (s / f"blobs/sha256/{'0' * 64}").exists()
    facts = store.parse_facts(
        subprocess.run(["bash", str(script), "facts", str(s), hexd], capture_output=True, text=True).stdout
    )
    assert facts[hexd]["trusted"] and facts[hexd]["size"] == 4
    out = subprocess.run(["bash", str(script), "assemble", str(s), "model-" + hexd, hexd, "4"], check=True)
    index = json.loads((s / f"refs/model-{hexd}/index.json").read_text())
    assert index["manifests"][0]["digest"] == "sha256:" + hexd
    assert (s / f"refs/model-{hexd}/blobs/sha256/{hexd}").read_bytes() == data  # through the symlink


def _store_script(tmp_path):
    script = tmp_path / "store.sh"
    script.write_bytes(scripts.text("store.sh"))
    return script


def test_the_store_lock_is_held_while_the_deploys_channel_is_open(tmp_path):
    import subprocess

    script, s = _store_script(tmp_path), tmp_path / "s"
    holder = subprocess.Popen(["bash", str(script), "lock", str(s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        assert subprocess.run(["flock", "-n", str(s / ".lock"), "true"]).returncode != 0  # a second deploy waits
    finally:
        holder.stdin.close()  # the channel closes (deploy done, or its connection dropped)
        holder.wait(timeout=60)
    assert subprocess.run(["flock", "-n", str(s / ".lock"), "true"]).returncode == 0


def test_prune_keeps_the_last_commits_and_every_image_of_a_run_that_is_not_final(tmp_path):
    import hashlib
    import subprocess

    script, root = _store_script(tmp_path), tmp_path / "proj"
    s = root / "images"
    for sub in ("blobs/sha256", "verified", "refs", "deploys"):
        (s / sub).mkdir(parents=True)

    def put(data: bytes) -> str:
        hex_ = hashlib.sha256(data).hexdigest()
        (s / "blobs/sha256" / hex_).write_bytes(data)
        return hex_

    def image(stage: str, layers: list[bytes], commit: str, when: str) -> str:
        hexes = [put(b) for b in layers]
        config = put(json.dumps({"c": hexes}).encode())
        manifest = put(
            json.dumps(
                {"config": {"digest": "sha256:" + config}, "layers": [{"digest": "sha256:" + h} for h in hexes]}
            ).encode()
        )
        key = f"{stage}-{config}"
        subprocess.run(["bash", str(script), "assemble", str(s), key, manifest, "1"], check=True)
        (s / "deploys" / f"{when}-{commit}").write_text(f"image {key}\n")
        return key

    base = b"base layer shared by every commit"
    old = image("model", [base, b"code v1"], "c1", "20260101T000000Z")
    mid = image("model", [base, b"code v2"], "c2", "20260102T000000Z")
    new = image("model", [base, b"code v3"], "c3", "20260103T000000Z")
    (s / f"{old}.sif").write_bytes(b"sif")
    (s / f"{mid}.sif").write_bytes(b"sif")
    (s / f"{mid}.sandbox" / "app").mkdir(parents=True)  # Apptainer without FUSE: a sandbox directory
    (s / f"{old}.sandbox" / "app").mkdir(parents=True)
    # a queued run of commit c1 (no state record yet): its image must stay
    run = root / "runs" / "r1"
    (run / "envs").mkdir(parents=True)
    (run / "envs/ids.txt").write_text("000000000a\n000000000b\n")
    (run / "state/tasks").mkdir(parents=True)
    (run / "state/tasks/000000000a.json").write_text('{"status": "completed"}')
    (run / "run.json").write_text(json.dumps({"images": {"model": "sha256:" + old.split("-")[1]}}, indent=0))
    final = "|".join(rundir.FINAL)
    (run / "state/tasks/000000000b.json").write_text('{"status": "requeued"}')  # SLURM runs it again: not final
    out = subprocess.run(["bash", str(script), "prune", str(s), "1", "proj", final], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (s / "refs" / old).is_dir() and (s / f"{old}.sif").exists()  # used by the queued run
    assert (s / "refs" / new).is_dir()  # the last commit
    assert not (s / "refs" / mid).exists() and not (s / f"{mid}.sif").exists()
    assert not (s / f"{mid}.sandbox").exists() and (s / f"{old}.sandbox").is_dir()
    assert (s / "blobs/sha256" / hashlib.sha256(base).hexdigest()).exists()
    assert not (s / "blobs/sha256" / hashlib.sha256(b"code v2").hexdigest()).exists()
    assert "removed 3 blobs" in out.stdout  # mid's code layer, config and manifest
    # once the run is final, only the last commit's image stays
    (run / "state/tasks/000000000b.json").write_text('{"status": "preempted"}')
    # ... unless what its params container wrote cannot be trusted: a line that is not a config id
    (run / "envs/ids.txt").write_text("000000000a\n../../../images/refs/x\n")
    subprocess.run(["bash", str(script), "prune", str(s), "1", "proj", final], check=True, capture_output=True)
    assert (s / "refs" / old).is_dir()
    (run / "envs/ids.txt").write_text("000000000a\n000000000b\n")
    subprocess.run(["bash", str(script), "prune", str(s), "1", "proj", final], check=True, capture_output=True)
    assert not (s / "refs" / old).exists() and (s / "refs" / new).is_dir()
    bad = subprocess.run(["bash", str(script), "prune", str(s), "0", "proj", final], capture_output=True, text=True)
    assert bad.returncode == 2 and "keep" in bad.stderr


def test_apptainers_lower_image_is_the_same_for_two_commits_that_changed_only_code(tmp_path):
    oci = tmp_path / "oci"
    deps = [b"base" * 1000, b"deps" * 1000]
    runtime_config = {
        "config": {"Entrypoint": ["python", "train.py"], "Labels": {"vcs-ref": "c1"}},
        "created": "2026-11-30T06:00:00Z",
    }
    _docker_archive(tmp_path / "a.tar", [*deps, b"code v1"], runtime_config)
    layout.import_docker_archive(tmp_path / "a.tar", oci, "model1")
    runtime_config = {
        "config": {"Entrypoint": ["python", "train.py"], "Labels": {"vcs-ref": "c2"}},
        "created": "2026-11-30T07:00:00Z",
    }
    _docker_archive(tmp_path / "b.tar", [*deps, b"code v2"], runtime_config)
    layout.import_docker_archive(tmp_path / "b.tar", oci, "model2")
    one = layout.lower_image(oci, layout.image_blobs(oci, layout.resolve(oci, "model1")))
    two = layout.lower_image(oci, layout.image_blobs(oci, layout.resolve(oci, "model2")))
    assert one == two and one[0].startswith("base-")  # one SIF serves both commits
    lower = layout.image_blobs(oci, one[1][0])
    config = json.loads(layout.read_blob(oci, lower[1]))
    assert len(lower) == 2 + 2 and len(config["rootfs"]["diff_ids"]) == 2
    assert config["config"]["Entrypoint"] == ["python", "train.py"] and "Labels" not in config["config"]


def test_the_first_new_deploy_removes_the_old_whole_archive_store_and_keeps_converted_images(tmp_path):
    import subprocess

    script, s = _store_script(tmp_path), tmp_path / "images"
    (s / "deploys").mkdir(parents=True)
    key = "model-" + "ab" * 32
    for name in (f"{key}.tar.gz", f"{key}.tar.gz.sha256", f"{key}.tar.gz.part", f"{key}.sif"):
        (s / name).write_bytes(b"old")
    subprocess.run(["bash", str(script), "record", str(s), "20261130T000000Z-abc"], input=b"image x\n", check=True)
    assert sorted(p.name for p in s.iterdir()) == ["deploys", f"{key}.sif"]
    assert (s / "deploys" / "20261130T000000Z-abc").read_text() == "image x\n"
