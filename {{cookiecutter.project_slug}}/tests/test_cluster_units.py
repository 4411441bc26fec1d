"""The cluster commands mlops builds, checked without a cluster: runtime argv, batch scripts, states.

Apptainer and Singularity cannot be installed on the template's test machines, so their commands
are checked here against the documented syntax (`apptainer build X.sif oci:LAYOUT:REF`,
`apptainer run --env-file F --bind SRC:DST --nv X.sif`); podman, charliecloud and SLURM also run
for real in the template's end-to-end tests.
"""

import base64
import subprocess

import pytest

from mlops import stages
from mlops.cluster import slurm, state, submit
from mlops.images import runtime
from mlops.images.runtime import Image, Raw
from mlops.ssh import Endpoint, HostKeyRefused, LoginFailed, codes, hostkeys, known_hosts, load_known_hosts

DIGEST = "sha256:" + "ab" * 32
STORE = "/work/u/proj/images"
RUN = "/work/u/proj/runs/p7"


def image(rt, stage="model"):
    return Image(stage, DIGEST, STORE, "proj", rt)


@pytest.mark.parametrize("rt", ["apptainer", "singularity"])
def test_apptainer_family_commands_follow_the_documented_syntax(rt):
    """A SIF of the lower layers (shared across commits) + the code layer as a read-only squashfs overlay.

    Not run here (no Apptainer on the test machines): checked against the documented syntax of
    `apptainer build X.sif oci:DIR:REF` and `apptainer run --overlay IMG.sqfs:ro X.sif`."""
    img = image(rt)
    base = "base-" + "cd" * 32
    split = runtime.Split(base, "ef" * 32)
    assert img.target == f"{STORE}/model-{'ab' * 32}.sif" and img.overlay == f"{STORE}/model-{'ab' * 32}.code.sqfs"
    convert = runtime.convert_command(img, split=split)
    # the lower image's SIF is built only when that lower image is new
    assert f"test -e {STORE}/{base}.sif || " in convert
    assert (
        f"rm -f {STORE}/{base}.sif.part && {rt} build {STORE}/{base}.sif.part oci:{STORE}/refs/{base}:{base} "
        f"&& mv -f {STORE}/{base}.sif.part {STORE}/{base}.sif; " in convert
    )
    assert f"tar -xzf {STORE}/blobs/sha256/{'ef' * 32} -C {img.overlay}.d" in convert
    assert f"mksquashfs {img.overlay}.d {img.overlay}.part -noappend" in convert
    assert convert.endswith(f"ln -sfn {base}.sif {img.target}.part && mv -Tf {img.target}.part {img.target}")
    assert runtime.converted_test(img) == f"test -e {img.target} && test -e {img.overlay}"
    with pytest.raises(ValueError, match="split"):
        runtime.convert_command(img)
    argv = runtime.run_argv(img, RUN, "/x/c1.env", gpu=True)
    assert argv[:2] == [rt, "run"] and argv[-3:] == ["--overlay", f"{img.overlay}:ro", img.target]
    assert argv[argv.index("--env-file") + 1] == "/x/c1.env"
    assert argv[argv.index("--bind") + 1] == f"{RUN}:/project"
    assert argv[argv.index("--pwd") + 1] == "/app"
    assert "--nv" in argv and "--cleanenv" in argv
    assert "--nv" not in runtime.run_argv(img, RUN, "/x/c1.env", gpu=False)


def test_podman_pulls_from_the_stores_oci_layout_and_runs_as_the_user():
    img = image("podman")
    convert = runtime.convert_command(img)
    assert img.layout == f"{STORE}/refs/model-{'ab' * 32}"
    # only missing layers are copied; a relative path, as podman names the image after it
    assert f"cd {STORE} && podman pull -q oci:refs/{img.key}:{img.key}" in convert
    assert convert.endswith(f'podman tag "$ref" {img.podman_ref}')
    assert runtime.converted_test(img) == f"podman image exists {img.podman_ref}"
    argv = runtime.run_argv(img, RUN, "/x/c1.env", gpu=True)
    assert argv[:3] == ["podman", "run", "--rm"] and argv[-1] == img.podman_ref
    assert "--userns=keep-id" in argv and argv[argv.index("--volume") + 1] == f"{RUN}:/project"
    assert argv[argv.index("--device") + 1] == "nvidia.com/gpu=all"
    assert "$(id -u):$(id -g)" in runtime.shell_join(argv)  # expanded by the task's shell


def test_charliecloud_converts_to_a_directory_with_the_mount_point_and_runs_the_entrypoint():
    img = image("charliecloud")
    convert = runtime.convert_command(img, gpu=True)
    assert f"ch-convert -i podman {img.podman_ref} {img.target}.part" in convert
    assert f"podman pull -q oci:refs/{img.key}:{img.key}" in convert  # podman's store skips unchanged layers
    assert f"mkdir -p {img.target}.part/project" in convert and "ch-fromhost --nvidia" in convert
    argv = runtime.run_argv(img, RUN, "/x/c1.env", entrypoint=["python", "train.py"])
    assert argv[0] == "ch-run" and "--set-env=/x/c1.env" in argv and f"--bind={RUN}:/project" in argv
    assert argv[argv.index("--") + 1 :] == ["python", "train.py"] and argv[argv.index("--") - 1] == img.target
    in_task = runtime.shell_join(runtime.run_argv(img, RUN, Raw('"$ENV_FILE"'), entrypoint=["python", "t.py"]))
    assert ' --set-env="$ENV_FILE" ' in in_task  # left for the task's shell to expand
    with pytest.raises(ValueError, match="entrypoint"):
        runtime.run_argv(img, RUN, "/x/c1.env")


def _code_layer(path, members: dict) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_charliecloud_applies_only_the_code_layer_to_a_hard_linked_copy_of_the_lower_tree(tmp_path):
    """Run for real without charliecloud: the lower tree exists (converted by an earlier deploy)."""
    import os

    store = tmp_path / "images"
    base_key, code_hex = "base-" + "cd" * 32, "ef" * 32
    img = Image("model", DIGEST, str(store), "proj", "charliecloud")
    lower = store / f"{base_key}.ch"
    (lower / "app").mkdir(parents=True)
    (lower / "project").mkdir()
    (lower / "app" / "train.py").write_text("old\n")
    (lower / "app" / "requirements.txt").write_text("numpy\n")
    (store / "blobs" / "sha256").mkdir(parents=True)
    _code_layer(store / "blobs" / "sha256" / code_hex, {"app/train.py": b"new\n", "app/extra.py": b"x\n"})
    command = runtime._charliecloud_incremental(img, False, runtime.Split(base_key, code_hex))
    assert subprocess.run(["bash", "-c", command], capture_output=True).returncode == 0
    tree = store / f"model-{'ab' * 32}.ch"
    assert (tree / "app" / "train.py").read_text() == "new\n" and (tree / "app" / "extra.py").exists()
    assert (lower / "app" / "train.py").read_text() == "old\n"  # the lower tree is never written
    assert os.stat(tree / "app" / "requirements.txt").st_ino == os.stat(lower / "app" / "requirements.txt").st_ino
    assert (tree / "project").is_dir()
    # a whiteout or a path outside /app: the incremental step refuses (the caller converts in full)
    for members in ({"app/.wh.train.py": b""}, {"etc/passwd": b"x"}, {"app/../etc/x": b"x"}):
        _code_layer(store / "blobs" / "sha256" / code_hex, members)
        assert subprocess.run(["bash", "-c", command], capture_output=True).returncode != 0
    full = runtime.convert_command(img, split=runtime.Split(base_key, code_hex))
    assert full.endswith(f"{runtime._charliecloud_full(img, False)}; }}")


def test_bad_runtime_and_digest_are_named():
    with pytest.raises(ValueError, match="cluster.runtime"):
        _ = image("docker").target
    with pytest.raises(ValueError, match="sha256"):
        _ = Image("model", "md5:zz", STORE, "proj", "podman").key


def test_raw_entrypoint_is_the_dockerfiles():
    from conftest import ROOT

    assert stages.raw_entrypoint(ROOT, stages.BY_NAME["model"])[0] in ("python", "python3")


@pytest.mark.parametrize(
    "indices,size,expected",
    [
        (list(range(5)), 1001, [(0, [0, 1, 2, 3, 4])]),
        (list(range(5)), 2, [(0, [0, 1]), (2, [0, 1]), (4, [0])]),
        ([1, 5, 6], 3, [(0, [1]), (3, [2]), (6, [0])]),
    ],
)
def test_arrays_are_split_below_max_array_size(indices, size, expected):
    chunks = slurm.array_chunks(indices, size)
    assert chunks == expected
    assert [offset + t for offset, ids in chunks for t in ids] == sorted(indices)
    assert all(t < size for _, ids in chunks for t in ids)


def test_array_spec_compression_and_expansion():
    assert slurm.compress([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert slurm.expand_array("0-2,5,7-9:2%4") == [0, 1, 2, 5, 7, 9]
    assert slurm.parse_max_array_size("MaxArraySize            = 3\nMaxJobCount = 1\n") == 3
    assert slurm.parse_max_array_size("") == 1001


def test_batch_scripts_are_sbatch_lines_and_one_command():
    opts = slurm.SlurmOptions(
        partition="gpu_4", account="ml-lab", time="00:10:00", cpus_per_task=2, mem="1G", parallel=3, gpu=True
    )
    files, chunks = slurm.batch_scripts(
        RUN, "proj", opts, list(range(5)), 4, attempt=1, with_stages=True, notify_argv=None
    )
    assert set(files) == {"params.sbatch", "data.sbatch", "model-1-0.sbatch", "model-1-1.sbatch"}
    model = files["model-1-0.sbatch"]
    for line in (
        "#SBATCH --array=0-3%3",
        "#SBATCH --partition=gpu_4",
        "#SBATCH --account=ml-lab",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --time=00:10:00",
        "#SBATCH --mem=1G",
        "#SBATCH --kill-on-invalid-dep=yes",
    ):
        assert line in model
    assert "--gres" not in files["params.sbatch"]
    assert (
        files["model-1-1.sbatch"].splitlines()[-1]
        == f"exec bash {RUN}/state/jobs/task.sh {RUN} 1 $((4 + SLURM_ARRAY_TASK_ID))"
    )
    for text in files.values():
        assert all(line.startswith("#") for line in text.splitlines()[:-1])
        subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    assert [c["indices"] for c in chunks] == [[0, 1, 2, 3], [4]]


def test_task_shell_file_writes_the_state_record_of_rundir(tmp_path):
    """Run the real task.sh with a stand-in 'container' argv on a local run dir."""
    from importlib import resources

    run = tmp_path / "run"
    for d in ("envs", "state/tasks", "state/jobs"):
        (run / d).mkdir(parents=True)
    (run / "envs" / "ids.txt").write_text("c0\nc1\n")
    for cid in ("c0", "c1"):
        (run / "envs" / f"{cid}.env").write_text(f"CONFIG_ID={cid}\n")
    task = tmp_path / "task.sh"
    task.write_bytes(resources.files("mlops.cluster").joinpath("shell/task.sh").read_bytes())
    (run / "state/jobs/model-1.argv").write_text(
        submit.argv_lines(
            ["sh", "-c", f'grep -q CONFIG_ID=c0 "$1" && touch {run}/results/c0/metrics.json', "x", "@ENV_FILE@"]
        )
    )
    assert subprocess.run(["bash", str(task), str(run), "1", "0"]).returncode == 0
    (run / "state/jobs/model-1.argv").write_text(submit.argv_lines(["sh", "-c", "echo boom >&2; exit 3"]))
    assert subprocess.run(["bash", str(task), str(run), "1", "1"]).returncode == 3
    from mlops import rundir

    states = rundir.read_task_states(run)
    assert states["c0"]["status"] == "completed" and states["c0"]["exit_code"] == 0
    assert states["c1"]["status"] == "failed" and states["c1"]["exit_code"] == 3
    assert "boom" in (run / "results" / "c1" / "log").read_text()
    assert states["c1"]["attempt"] == 1 and states["c1"]["duration_s"] >= 0 and states["c1"]["job"] == "local_1"


def test_slurm_states_map_to_run_states():
    assert slurm.slurm_state("CANCELLED by 1001") == "cancelled"
    assert slurm.slurm_state("OUT_OF_MEMORY") == "out-of-memory"
    assert slurm.slurm_state("TIMEOUT") == "timeout"
    assert slurm.slurm_state("PENDING") == "pending"
    assert slurm.parse_sacct("12_0|COMPLETED\n12_[1-2%2]|PENDING\n11|FAILED\n") == {
        "12_0": "COMPLETED",
        "12_1": "PENDING",
        "12_2": "PENDING",
        "11": "FAILED",
    }
    line = "JobId=13 ArrayJobId=12 ArrayTaskId=3-4%2 JobState=PENDING Reason=JobArrayTaskLimit"
    assert slurm.parse_scontrol(line) == {"12_3": "PENDING", "12_4": "PENDING"}


def test_merge_prefers_final_records_and_the_schedulers_kills():
    index = [{"index": i, "config_id": f"c{i}"} for i in range(4)]
    attempts = [{"attempt": 1, "model": [{"job": "12", "offset": 0, "indices": [0, 1, 2, 3]}]}]
    records = {"c0": {"status": "completed", "attempt": 1}, "c1": {"status": "running", "attempt": 1}}
    sched = {"12_1": "TIMEOUT", "12_2": "RUNNING", "12_3": "PENDING"}
    out = state.merge(index, records, attempts, sched)
    assert [out[f"c{i}"]["status"] for i in range(4)] == ["completed", "timeout", "running", "pending"]
    # a rerun: the old failed record does not hide the new attempt's pending task
    attempts.append({"attempt": 2, "model": [{"job": "20", "offset": 0, "indices": [1]}]})
    out = state.merge(index, {**records, "c1": {"status": "failed", "attempt": 1}}, attempts, {"20_1": "PENDING"})
    assert out["c1"]["status"] == "pending"


def test_totp_matches_rfc6238_and_codes_come_from_env_only():
    # RFC 6238 appendix B test vector (SHA-1, secret "12345678901234567890"), last 6 digits
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # pragma: allowlist secret (RFC 6238 test vector)
    assert codes.totp_now(secret, at=59) == "287082"
    assert codes.totp_now(secret, at=1111111109) == "081804"
    assert codes.from_env({"HPC_OTP": " 123456 "}, stdin=None).code() == "123456"
    with pytest.raises(codes.CodeProblem, match="HPC_OTP"):
        codes.from_env({}, stdin=None)


def test_host_key_must_match_the_pinned_line(tmp_path):
    for name in ("k1", "k2"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    pinned, other = ((tmp_path / f"{n}.pub").read_text().split()[:2] for n in ("k1", "k2"))
    blob, other_blob = (base64.b64decode(k[1]) for k in (pinned, other))
    known = known_hosts.parse(f"[hpc.example.org]:2222 {pinned[0]} {pinned[1]}\n")
    assert hostkeys.verify(known, "hpc.example.org", 2222, "ssh-ed25519", blob)
    with pytest.raises(HostKeyRefused, match="does NOT match"):
        hostkeys.verify(known, "hpc.example.org", 2222, "ssh-ed25519", other_blob)
    with pytest.raises(HostKeyRefused, match="not in the pinned"):
        hostkeys.verify(known, "other.example.org", 22, "ssh-ed25519", blob)
    with pytest.raises(LoginFailed, match=r"known_hosts: missing\. The cluster's host key is pinned in the repository"):
        load_known_hosts(known_hosts.pinned_path(tmp_path))


def test_jump_host_spec():
    assert Endpoint.parse("bob@jump.example.org:2200", "alice") == Endpoint("jump.example.org", 2200, "bob")
    assert Endpoint.parse("jump", "alice") == Endpoint("jump", 22, "alice")
    assert Endpoint("h", 22).known_hosts_name == "h"
    assert Endpoint("h", 2222).known_hosts_name == "[h]:2222"
