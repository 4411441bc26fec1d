"""The cluster commands mlops builds, checked without a cluster: batch scripts, states, logins.

(Moved from the rendered project's tests/ in 0.3: the machinery is tested in the template.)

The runtimes' argv and conversions are checked in tests/unit/test_images_runtime.py and run for real
(Apptainer, podman, charliecloud, SLURM) in the end-to-end tests.
"""

import base64
import subprocess

import pytest

from mlops import stages
from mlops.cluster import prepare, sbatch, slurm, state
from mlops.images.runtime import Image
from mlops.ssh import Endpoint, HostKeyRefused, LoginFailed, codes, hostkeys, known_hosts, load_known_hosts

DIGEST = "sha256:" + "ab" * 32
STORE = "/work/u/proj/images"
RUN = "/work/u/proj/runs/p7"


def image(rt, stage="model"):
    return Image(stage, DIGEST, STORE, "proj", rt)


def test_bad_runtime_and_digest_are_named():
    with pytest.raises(ValueError, match="clusters.NAME.runtime"):
        _ = image("docker").target
    with pytest.raises(ValueError, match="sha256"):
        _ = Image("model", "md5:zz", STORE, "proj", "podman").key


def test_raw_entrypoint_is_the_dockerfiles():
    from support.render import PROJECT_TEMPLATE  # the ENTRYPOINT line has no Jinja in it

    assert stages.raw_entrypoint(PROJECT_TEMPLATE, stages.BY_NAME["model"])[0] in ("python", "python3")


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


def _default_settings(tmp_path):
    """The settings of a project rendered with the default answers (the post-gen hook's fill_toml)."""
    from mlops import settings
    from support.render import PROJECT_TEMPLATE, answers_for

    text = (PROJECT_TEMPLATE / settings.FILENAME).read_text()
    (tmp_path / settings.FILENAME).write_text(settings.fill_toml(text, answers_for({})))
    return settings.load(tmp_path)


def test_array_spec_compression_and_expansion():
    assert slurm.compress([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert slurm.expand_array("0-2,5,7-9:2%4") == [0, 1, 2, 5, 7, 9]
    assert slurm.parse_max_array_size("MaxArraySize            = 3\nMaxJobCount = 1\n") == 3
    assert slurm.parse_max_array_size("") == 1001


def test_batch_scripts_are_sbatch_lines_and_one_command(tmp_path):
    import dataclasses

    s = _default_settings(tmp_path)
    s = dataclasses.replace(
        s,
        scheduler=dataclasses.replace(
            s.scheduler, partition="gpu_4", account="ml-lab", time="00:10:00", cpus_per_task=2, mem="1G", parallel=3
        ),
        cluster=dataclasses.replace(s.cluster, use_gpu=True),
    )
    files, chunks = sbatch.batch_scripts(s, RUN, "p7", list(range(5)), 4, attempt=1, with_stages=True, notify_argv=None)
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
    # params and data jobs get the stage limits (scheduler.stage_time, default 30 min), not the model task's
    assert "--gres" not in files["params.sbatch"] and "--time=00:10:00" not in files["params.sbatch"]
    assert f"#SBATCH --time={s.scheduler.stage_time}" in files["params.sbatch"]
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
    c0, c1 = "00000000c0", "00000000c1"  # config ids: 10 hex digits (task.sh refuses anything else)
    from importlib import resources

    run = tmp_path / "run"
    for d in ("envs", "state/tasks", "state/jobs"):
        (run / d).mkdir(parents=True)
    (run / "envs" / "ids.txt").write_text(f"{c0}\n{c1}\n")
    for cid in (c0, c1):
        (run / "envs" / f"{cid}.env").write_text(f"CONFIG_ID={cid}\n")
    task = tmp_path / "task.sh"
    task.write_bytes(resources.files("mlops.cluster").joinpath("shell/task.sh").read_bytes())
    (run / "state/jobs/model-1.argv").write_text(
        prepare.argv_lines(
            [
                "sh",
                "-c",
                f'grep -q CONFIG_ID={c0} "$1" && touch {run}/results/{c0}/metrics.json',
                "x",
                "@ENV_FILE@",
            ]
        )
    )
    assert subprocess.run(["bash", str(task), str(run), "1", "0"]).returncode == 0
    (run / "state/jobs/model-1.argv").write_text(prepare.argv_lines(["sh", "-c", "echo boom >&2; exit 3"]))
    assert subprocess.run(["bash", str(task), str(run), "1", "1"]).returncode == 3
    from mlops import rundir

    states = rundir.read_task_states(run)
    assert states[c0]["status"] == "completed" and states[c0]["exit_code"] == 0
    assert states[c1]["status"] == "failed" and states[c1]["exit_code"] == 3
    assert "boom" in (run / "results" / c1 / "log").read_text()
    assert states[c1]["attempt"] == 1 and states[c1]["duration_s"] >= 0 and states[c1]["job"] == "local_1"


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
