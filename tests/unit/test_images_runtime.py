"""The images room's cluster side without a cluster: what each stage's container sees (contract C),
the run argv per runtime, convert.sh with stand-in runtimes (the OCI source syntax, the no-FUSE
fallback, Charliecloud's incremental copy), the version checks, and the task wrapper's distrust of
what containers wrote. The real runtimes run in tests/e2e (test_runtimes_e2e.py, test_hostile_stage_e2e.py).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from importlib import resources
from pathlib import Path

import pytest

from mlops import errors, params
from mlops.images import convert, deployment, runtime, scripts, store

DIGEST = "sha256:" + "ab" * 32
STORE = "/work/u/proj/images"
RUN = "/work/u/proj/runs/p7"
RUNTIMES = ("apptainer", "singularity", "podman", "charliecloud")


def image(rt: str, stage: str = "model", form: str = "") -> runtime.Image:
    return runtime.Image(stage, DIGEST, STORE, "proj", rt, form)


def argv(rt: str, stage: str, **kw) -> list[str]:
    return runtime.run_argv(image(rt, stage), RUN, entrypoint=["python", "x.py"], **kw)


# ---------------------------------------------------------------- what a container sees


@pytest.mark.parametrize("rt", RUNTIMES)
@pytest.mark.parametrize("stage", ["params", "data", "model"])
def test_a_stage_binds_only_its_own_directories_never_the_run_or_state(rt, stage):
    words = argv(rt, stage)
    line = " ".join(words)
    assert f"{RUN}/state" not in line and f"{RUN}:" not in line and f"{RUN}/envs/" not in line
    expected = {"params": [f"{RUN}/envs"], "data": [f"{RUN}/data"],
                "model": [f"{RUN}/data", f"{RUN}/results/{runtime.CID}"]}[stage]  # fmt: skip
    sources = [w.split("=", 1)[-1].split(":")[0] for w in words if w.startswith("--bind=")]
    sources += [words[i + 1].split(":")[0] for i, w in enumerate(words) if w in ("--bind", "--volume")]
    assert sources == expected
    assert words.count(runtime.ENV_FILE) + line.count(f"--set-env={runtime.ENV_FILE}") == 1  # host-side env file


@pytest.mark.parametrize("rt", ["apptainer", "singularity", "podman"])
def test_the_model_reads_data_read_only_and_writes_only_its_own_results(rt):
    words = argv(rt, "model")
    binds = [words[i + 1] for i, w in enumerate(words) if w in ("--bind", "--volume")]
    assert binds == [f"{RUN}/data:/project/data:ro", f"{RUN}/results/@CID@:/project/results/@CID@"]


@pytest.mark.parametrize("rt", ["apptainer", "singularity"])
def test_apptainer_runs_contained_in_either_form(rt):
    sif = runtime.run_argv(image(rt), RUN, gpu=True)
    assert sif[:7] == [rt, "run", "--containall", "--no-mount", "hostfs,bind-paths,cwd", "--env-file", "@ENV_FILE@"]
    assert sif[-3:] == ["--overlay", f"{STORE}/model-{'ab' * 32}.code.sqfs:ro", f"{STORE}/model-{'ab' * 32}.sif"]
    assert "--nv" in sif and sif[sif.index("--pwd") + 1] == "/app"
    assert "--cleanenv" not in sif and "--no-home" not in sif  # --containall covers both (and PID, IPC, /tmp)
    sandbox = runtime.run_argv(image(rt, form="sandbox"), RUN)
    assert sandbox[-1] == f"{STORE}/model-{'ab' * 32}.sandbox" and "--overlay" not in sandbox and "--nv" not in sandbox
    with pytest.raises(ValueError, match="form"):
        _ = image(rt, form="dir").target


def test_podman_runs_as_the_user_with_only_the_binds():
    words = runtime.run_argv(image("podman"), RUN, gpu=True)
    assert words[:3] == ["podman", "run", "--rm"] and words[-1] == image("podman").podman_ref
    assert "--userns=keep-id" in words and words[words.index("--user") + 1] == "@UID@:@GID@"
    assert words[words.index("--device") + 1] == "nvidia.com/gpu=all"
    assert not [w for w in words if w.startswith(("--pid", "--ipc"))]  # podman's own namespaces


def test_charliecloud_gets_a_pid_namespace_a_private_tmp_and_binds_under_it():
    words = argv("charliecloud", "model")
    assert words[: words.index("ch-run")] == [
        "unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"]  # fmt: skip
    assert "--uid=@UID@" in words and "--gid=@GID@" in words and "--private-tmp" in words
    assert "--set-env=@ENV_FILE@" in words and "--unset-env=*" in words
    assert f"--bind={RUN}/data:/tmp/project/data" in words
    assert f"--bind={RUN}/results/@CID@:/tmp/project/results/@CID@" in words
    assert words[words.index("--") - 1] == f"{STORE}/model-{'ab' * 32}.ch" and words[-2:] == ["python", "x.py"]
    with pytest.raises(ValueError, match="entrypoint"):
        runtime.run_argv(image("charliecloud"), RUN)


def test_placeholders_are_filled_and_argv_files_are_one_word_per_line():
    filled = runtime.fill(argv("podman", "model"), "/r/envs/c.env", "0123456789", 1001, 1002)
    assert "/r/envs/c.env" in filled and "1001:1002" in filled
    assert f"{RUN}/results/0123456789:/project/results/0123456789" in filled
    assert not [w for w in filled if "@" in w and w.count("@") > 1]
    assert runtime.argv_file(["a b", "c"]) == "a b\nc\n"
    with pytest.raises(ValueError, match="newline"):
        runtime.argv_file(["a\nb"])


# ---------------------------------------------------------------- convert.sh with stand-in runtimes

STUBS = Path(__file__).resolve().parents[1] / "support" / "apptainer"


def _layer(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def cluster(tmp_path):
    """A store with one image's layout (index.json) and its lower image's, stand-in tools first on PATH."""
    bin_dir, store_dir = tmp_path / "bin", tmp_path / "images"
    bin_dir.mkdir()
    for name in ("apptainer", "mksquashfs"):  # stand-ins (tests/support/apptainer/stub_*.sh)
        (bin_dir / name).write_bytes((STUBS / f"stub_{name}.sh").read_bytes())
        (bin_dir / name).chmod(0o755)
    key, base, code = f"model-{'ab' * 32}", "base-" + "cd" * 32, "ef" * 32
    for k in (key, base):
        (store_dir / "refs" / k).mkdir(parents=True)
        (store_dir / "refs" / k / "index.json").write_text("{}")
    (store_dir / "blobs" / "sha256").mkdir(parents=True)
    _layer(store_dir / "blobs" / "sha256" / code, {"app/train.py": b"new\n", "app/extra.py": b"x\n"})
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(*args):
        cmd = ["bash", "-c", scripts.text("convert.sh").decode(), "convert.sh", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        said = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
        return proc, said

    return {"bin": bin_dir, "store": store_dir, "key": key, "base": base, "code": code, "run": run}


def test_apptainer_builds_the_lower_sif_from_oci_dir_without_a_reference_and_overlays_the_code(cluster):
    """`oci:DIR:REF` (what this test asserted before) fails on Apptainer 1.4; `oci:DIR` works on all."""
    c = cluster
    proc, said = c["run"]("apptainer", str(c["store"]), c["key"], c["base"], c["code"], "0")
    assert proc.returncode == 0, proc.stderr
    assert said == {"form": "sif", "built": "1"}
    calls = (c["bin"] / "calls.log").read_text().splitlines()
    assert calls[:2] == [  # can this runtime mount images here? (a probe image of a few KB)
        f"build --disable-cache {c['store']}/probe/probe.sif {c['store']}/probe/root",
        f"exec --containall --overlay {c['store']}/probe/probe.sqfs:ro {c['store']}/probe/probe.sif /bin/true",
    ]
    assert calls[2] == f"build --disable-cache {c['store']}/{c['base']}.sif.part oci:{c['store']}/refs/{c['base']}"
    assert calls[3].startswith("exec --containall --overlay ") and calls[3].endswith(f"{c['base']}.sif /bin/sh -c :")
    assert os.readlink(c["store"] / f"{c['key']}.sif") == f"{c['base']}.sif"
    assert (c["store"] / f"{c['key']}.code.sqfs").is_file()
    proc, said = c["run"]("apptainer", str(c["store"]), c["key"], c["base"], c["code"], "0")
    assert said == {"form": "sif", "built": "0"}  # a second deploy builds nothing
    assert not [line for line in (c["bin"] / "calls.log").read_text().splitlines() if ":" + c["base"] in line]


def test_without_a_usable_dev_fuse_apptainer_falls_back_to_a_sandbox_and_says_why(cluster):
    c = cluster
    c["run"]("apptainer", str(c["store"]), c["key"], c["base"], c["code"], "0")  # the sif form first
    (c["bin"] / "nofuse").touch()
    done = len((c["bin"] / "calls.log").read_text().splitlines())
    proc, said = c["run"]("apptainer", str(c["store"]), c["key"], c["base"], c["code"], "0")
    calls = (c["bin"] / "calls.log").read_text().splitlines()[done:]
    assert not [line for line in calls if ".sif.part" in line], "no SIF is built where none can be mounted"
    assert proc.returncode == 0, proc.stderr
    assert said["form"] == "sandbox" and said["built"] == "1" and "/dev/fuse: Permission denied" in said["nofuse"]
    assert not (c["store"] / f"{c['key']}.sif").exists(), "the sif form cannot run here: runs take the sandbox"
    tree, lower = c["store"] / f"{c['key']}.sandbox", c["store"] / f"{c['base']}.sandbox"
    assert (tree / "app" / "train.py").read_text() == "new\n" and (tree / "app" / "extra.py").exists()
    assert (lower / "app" / "train.py").read_text() == "lower\n"  # the lower tree is never written
    assert os.stat(tree / "usr" / "lib.py").st_ino == os.stat(lower / "usr" / "lib.py").st_ino  # hard links
    # a code layer that is not plain files under /app: the whole image becomes a sandbox
    _layer(c["store"] / "blobs" / "sha256" / c["code"], {"etc/passwd": b"x"})
    other = f"data-{'12' * 32}"
    (c["store"] / "refs" / other).mkdir()
    (c["store"] / "refs" / other / "index.json").write_text("{}")
    proc, said = c["run"]("apptainer", str(c["store"]), other, c["base"], c["code"], "0")
    assert said["form"] == "sandbox", proc.stderr
    assert (
        f"build --disable-cache --sandbox {c['store']}/{other}.sandbox.part oci:{c['store']}/refs/{other}"
        in (c["bin"] / "calls.log").read_text()
    )


def test_a_probe_failure_that_is_not_fuse_fails_the_conversion(cluster):
    c = cluster
    (c["bin"] / "broken").touch()
    proc, said = c["run"]("apptainer", str(c["store"]), c["key"], c["base"], c["code"], "0")
    assert proc.returncode == 1 and "bad magic" in proc.stderr and "form" not in said


def test_locate_finds_each_form_and_refuses_bad_keys(cluster):
    c = cluster
    proc, _ = c["run"]("locate", "apptainer", str(c["store"]), "proj", c["key"])
    assert proc.stdout == f"{c['key']} missing\n"
    (c["store"] / f"{c['key']}.sandbox").mkdir()
    assert c["run"]("locate", "apptainer", str(c["store"]), "proj", c["key"])[0].stdout == f"{c['key']} sandbox\n"
    (c["store"] / f"{c['key']}.sif").touch()
    (c["store"] / f"{c['key']}.code.sqfs").touch()
    assert c["run"]("locate", "singularity", str(c["store"]), "proj", c["key"])[0].stdout == f"{c['key']} sif\n"
    bad = c["run"]("locate", "apptainer", str(c["store"]), "proj", "../../etc")[0]
    assert bad.returncode == 2 and "bad image key" in bad.stderr


def test_charliecloud_copies_the_lower_tree_with_hard_links_and_adds_only_the_code(cluster):
    c = cluster
    lower = c["store"] / f"{c['base']}.ch"
    (lower / "app").mkdir(parents=True)
    (lower / "app" / "train.py").write_text("old\n")
    (lower / "app" / "requirements.txt").write_text("numpy\n")
    os.symlink("/tmp/project", lower / "project")
    proc, said = c["run"]("charliecloud", str(c["store"]), c["key"], c["base"], c["code"], "0", "proj")
    assert proc.returncode == 0, proc.stderr
    assert said == {"form": "dir", "built": "1"}
    tree = c["store"] / f"{c['key']}.ch"
    assert (tree / "app" / "train.py").read_text() == "new\n" and (lower / "app" / "train.py").read_text() == "old\n"
    assert os.stat(tree / "app" / "requirements.txt").st_ino == os.stat(lower / "app" / "requirements.txt").st_ino
    assert os.readlink(tree / "project") == "/tmp/project"  # where ch-run can make the binds' mount points
    assert c["run"]("charliecloud", str(c["store"]), c["key"], c["base"], c["code"], "0", "proj")[1]["built"] == "0"


@pytest.mark.parametrize(
    ("rt", "answer", "problem"),
    [
        ("apptainer", "apptainer apptainer version 1.4.5\nmksquashfs x\ntar x", None),
        ("apptainer", "apptainer apptainer version 1.1.9-1.el8\nmksquashfs x\ntar x", None),
        ("singularity", "singularity singularity-ce version 4.1.0-jammy\nmksquashfs x\ntar x", None),
        ("singularity", "singularity singularity version 3.8.7-1.el7\nmksquashfs x\ntar x", None),
        ("singularity", "singularity apptainer version 1.3.6\nmksquashfs x\ntar x", None),
        ("singularity", "singularity singularity-ce version 3.6.4\nmksquashfs x\ntar x", "singularity-ce >= 3.7"),
        ("apptainer", "apptainer missing\nmksquashfs x\ntar x", "apptainer is not on the PATH"),
        ("charliecloud", "ch-run 0.31\nch-convert x\npodman x\nunshare x\ntar x", None),
        ("charliecloud", "ch-run 0.21\nch-convert x\npodman x\nunshare x\ntar x", "ch-run >= 0.25"),
        ("charliecloud", "ch-run 0.31\nch-convert x\npodman x\nunshare missing\ntar x", "unshare is not on"),
    ],
)
def test_runtime_versions_mlops_can_run_contained(rt, answer, problem):
    found = convert.check_versions(rt, answer)
    assert (found == []) if problem is None else (problem in found[0])


def test_setup_errors_of_deploy_and_prune_exit_2_before_any_remote_command(tmp_path):
    class Recording:
        commands: list = []

        def run(self, command, **kw):
            self.commands.append(command)
            raise AssertionError("no remote command may run")

        def hold(self, *a, **kw):
            raise AssertionError("no lock may be taken")

    from support.local_cluster import make_settings

    cfg = make_settings(tmp_path, cluster={"workdir": str(tmp_path / "hpc"), "runtime": "podman"})
    (tmp_path / "images.json").write_text('{"version": 2, "images": {}}')
    with pytest.raises(errors.BadInput, match="no params image.*mlops build") as info:
        deployment.deploy(Recording(), cfg, tmp_path / "images.json", out=io.StringIO())
    assert info.value.exit_code == 2
    with pytest.raises(errors.BadInput, match="images.keep = 0"):
        store.prune(Recording(), cfg, keep=0)
    bad = make_settings(tmp_path, cluster={"runtime": "docker"})
    with pytest.raises(errors.BadInput, match="clusters.NAME.runtime"):
        deployment.deploy(Recording(), bad, tmp_path / "images.json", out=io.StringIO())
    assert Recording.commands == []


# ---------------------------------------------------------------- the host side distrusts what containers wrote

CID0, CID1 = "0123456789", "abcdefabcd"


@pytest.fixture
def task(tmp_path):
    run = tmp_path / "run"
    for d in ("envs", "state/tasks", "state/jobs", "results"):
        (run / d).mkdir(parents=True)
    (run / "envs" / "ids.txt").write_text(f"{CID0}\n{CID1}\n")
    for cid in (CID0, CID1):
        (run / "envs" / f"{cid}.env").write_text(f"CONFIG_ID={cid}\n")
    script = tmp_path / "task.sh"
    script.write_bytes(resources.files("mlops.cluster").joinpath("shell/task.sh").read_bytes())
    # the "container": writes metrics.json into the results dir it was given (@CID@)
    words = ["sh", "-c", f'grep -q "CONFIG_ID=$2" "$1" && echo {{}} > {run}/results/$2/metrics.json', "x",
             runtime.ENV_FILE, runtime.CID]  # fmt: skip
    (run / "state/jobs/model-1.argv").write_text(runtime.argv_file(words))
    secret = tmp_path / "secret"
    secret.write_text("CANARY=token-of-the-host\n")

    def go(index: int) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), str(run), "1", str(index)], capture_output=True, text=True)

    return {"run": run, "go": go, "secret": secret}


def test_the_task_runs_a_good_configuration(task):
    assert task["go"](0).returncode == 0
    assert (task["run"] / "results" / CID0 / "metrics.json").is_file()


def test_a_config_id_that_is_not_10_hex_digits_is_refused_and_never_printed(task):
    (task["run"] / "envs" / "ids.txt").write_text("../../../state/x\n")
    proc = task["go"](0)
    assert proc.returncode == 3 and "not a config id" in proc.stderr and "state/x" not in proc.stderr
    assert not list((task["run"] / "state" / "tasks").iterdir())


def test_an_env_file_or_ids_file_planted_as_a_link_is_refused(task):
    env = task["run"] / "envs" / f"{CID0}.env"
    env.unlink()
    env.symlink_to(task["secret"])
    proc = task["go"](0)
    assert proc.returncode == 3 and not (task["run"] / "results" / CID0 / "metrics.json").exists()
    assert "CANARY" not in (task["run"] / "results" / CID0 / "log").read_text()
    assert '"status": "failed"' in (task["run"] / "state" / "tasks" / f"{CID0}.json").read_text()
    ids = task["run"] / "envs" / "ids.txt"
    ids.rename(task["run"] / "ids.real")
    ids.symlink_to(task["run"] / "ids.real")
    assert task["go"](1).returncode == 3


def test_an_earlier_attempts_links_in_results_are_not_written_through(task):
    results = task["run"] / "results" / CID0
    results.mkdir()
    (results / "log").symlink_to(task["secret"])  # planted by an earlier attempt's container
    (results / "metrics.json").symlink_to(task["secret"])
    assert task["go"](0).returncode == 0
    assert task["secret"].read_text() == "CANARY=token-of-the-host\n"
    assert not (results / "log").is_symlink() and (results / "metrics.json").read_text().strip() == "{}"


def test_params_writes_into_the_envs_mount_point_and_nothing_beside_it(tmp_path):
    """On the cluster the params container sees only envs/ (a mount point: it cannot be replaced)."""
    out = tmp_path / "run" / "envs"
    out.mkdir(parents=True)
    (out / "stale.env").write_text("OLD=1\n")
    inode = out.stat().st_ino
    configurations = params.expand({"fixed": {"a": 1}, "grid": {"b": [1, 2]}})
    params.write_envs(configurations, out, "/project", {"RUN_ID": "p1"})
    assert out.stat().st_ino == inode and sorted(p.name for p in tmp_path.joinpath("run").iterdir()) == ["envs"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{c.config_id}.env" for c in configurations] + ["ids.txt", "index.json"])


def test_one_build_serves_every_cluster_each_with_its_runtime_and_store(tmp_path):
    """Issue 21: `mlops deploy --cluster NAME` ships the same images (the same digests) into that
    cluster's own store, converted for that cluster's runtime."""
    import json
    import tomllib

    import tomlkit

    from mlops import settings
    from mlops.images import layout
    from support.results_settings import toml_text

    text = toml_text({"uni": tmp_path / "uni-work", "state": tmp_path / "state-work"})
    doc = tomlkit.parse(text)
    doc["clusters"]["uni"]["runtime"], doc["clusters"]["state"]["runtime"] = "apptainer", "podman"
    s = settings.from_data(tomllib.loads(tomlkit.dumps(doc)), tmp_path)
    oci, entries = tmp_path / "images" / "oci", {}
    for stage in ("params", "data", "model"):
        archive = tmp_path / f"{stage}.tar"
        digest = _docker_archive(archive, [b"base layer", f"code of {stage}".encode()], {"Env": [f"STAGE={stage}"]})
        layout.import_docker_archive(archive, oci, stage)
        entries[stage] = {"layout": "images/oci", "oci_ref": stage, "digest": digest}
    manifest = tmp_path / "images" / "images.json"
    manifest.write_text(json.dumps({"version": 2, "images": entries}))
    uni = deployment.local_images(s.select("uni"), manifest)
    state = deployment.local_images(s.select("state"), manifest)
    for stage in ("params", "data", "model"):
        a, b = uni[stage], state[stage]
        assert a.image.digest == b.image.digest == entries[stage]["digest"]  # one build
        assert (a.image.runtime, b.image.runtime) == ("apptainer", "podman")
        assert a.image.store == f"{tmp_path / 'uni-work'}/proj/images" != b.image.store
        assert a.split is not None and b.split is None  # apptainer: the lower image once + the code layer
        assert len(a.ship) == len(b.ship) + 2  # plus the lower image's manifest and config


def _docker_archive(path: Path, layers: list[bytes], config: dict) -> str:
    """A docker-archive (`docker save` format, what every builder writes) of `layers`; its image id."""
    import hashlib
    import json

    data = json.dumps({"config": config, "rootfs": {"type": "layers", "diff_ids": [
        "sha256:" + hashlib.sha256(b).hexdigest() for b in layers]}}).encode()  # fmt: skip
    members = {"config.json": data, **{f"l{n}/layer.tar": b for n, b in enumerate(layers)}}
    members["manifest.json"] = json.dumps(
        [{"Config": "config.json", "RepoTags": ["x:y"], "Layers": [f"l{n}/layer.tar" for n in range(len(layers))]}]
    ).encode()
    with tarfile.open(path, "w") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return "sha256:" + hashlib.sha256(data).hexdigest()
