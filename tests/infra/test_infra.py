"""Self-tests of the test infrastructure: every piece started and used for real.

Run (as root) from the repo root:
    PYTHONPATH=tests python -m pytest -p no:cacheprovider tests/infra -m infra -x -q
"""

import os
import shutil
import subprocess
import time

import paramiko
import pytest

from support.infra._util import pid_alive, shared_tmpdir, wait_for
from support.infra.podman import charliecloud_probe
from support.infra.ports import free_port, listening_addresses, port_open
from support.infra.slurm import LocalSlurm
from support.infra.sshd_totp import TotpSshServer

# read by the slurm_cluster fixture: small, so array splitting can be tested
SLURM_MAX_ARRAY_SIZE = 10


def test_free_port_is_free():
    port = free_port()
    assert 1024 < port < 65536 and not port_open(port)


# ------------------------------------------------------------------ ssh + TOTP
def test_key_and_totp_login(ssh_server, ssh_transport, ssh_run, slurm_cluster):
    assert ssh_transport.is_authenticated()
    rc, out, _ = ssh_run("id -un; echo $SLURM_CONF")
    assert rc == 0
    assert out.split() == [ssh_server.user, str(slurm_cluster.conf_path)]
    # exactly one TCP connection and one login so far: the shared transport
    assert ssh_server.count_connections() == 1
    assert ssh_server.count_logins() == 1
    assert listening_addresses(ssh_server.port) == ["127.0.0.1"]


def test_many_commands_one_login(ssh_server, ssh_run):
    before = ssh_server.count_connections()
    for i in range(20):
        assert ssh_run(f"echo {i}")[1].strip() == str(i)
    assert ssh_server.count_connections() == before


def test_wrong_code_refused(ssh_server):
    before = ssh_server.count_auth_attempts()
    with pytest.raises(paramiko.AuthenticationException):
        ssh_server.transport(code=ssh_server.wrong_otp())
    wait_for(lambda: ssh_server.count_auth_attempts() == before + 1, 5, "Failed line in sshd log")
    assert ssh_server.count_logins() == 1
    assert "Failed keyboard-interactive/pam" in ssh_server.log_text()


def test_key_alone_gets_no_session(ssh_server):
    t = paramiko.Transport((ssh_server.host, ssh_server.port))
    try:
        t.start_client(timeout=10)
        key = paramiko.Ed25519Key(filename=str(ssh_server.client_key_path))
        assert t.auth_publickey(ssh_server.user, key) == ["keyboard-interactive"]
        assert not t.is_authenticated()
        with pytest.raises(paramiko.SSHException):
            t.open_session(timeout=3)
    finally:
        t.close()
    assert ssh_server.count_logins() == 1


def test_changed_host_key_refused_by_openssh():
    """Own key-only server: OpenSSH with the pinned old key must refuse
    after rotate_host_key(), before any authentication is attempted."""
    with TotpSshServer(auth="key") as srv:
        cfg = srv.write_ssh_config(srv.workdir / "ssh_config", alias="hpc")
        ssh = ["ssh", "-F", str(cfg), "-o", "BatchMode=yes", "hpc"]
        cp = subprocess.run(ssh + ["echo ok"], capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0 and cp.stdout.strip() == "ok", cp.stderr
        old_line = srv.known_hosts_line
        new_line = srv.rotate_host_key()
        assert new_line != old_line
        cp = subprocess.run(ssh + ["echo ok"], capture_output=True, text=True, timeout=30)
        assert cp.returncode == 255
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in cp.stderr
        assert srv.count_logins() == 1
        # paramiko pinning the old key refuses too
        t = paramiko.Transport((srv.host, srv.port))
        t.start_client(timeout=10)
        try:
            assert t.get_remote_server_key().get_base64() != old_line.split()[2]
        finally:
            t.close()
    assert not port_open(srv.port)
    assert not srv.pam_path.exists()


def test_openssh_controlmaster_one_login():
    """OpenSSH path: one TOTP login (sshpass) opens a master; ssh/scp reuse it.
    Own server, so its fresh secret has no code used yet in this window."""
    with TotpSshServer(auth="totp") as srv:
        cfg = srv.write_ssh_config(srv.workdir / "ssh_config", alias="hpc", control_dir=srv.workdir)
        srv.openssh_master(cfg, "hpc")
        for i in range(5):
            cp = subprocess.run(["ssh", "-F", str(cfg), "hpc", f"echo {i}"], capture_output=True, text=True, timeout=30)
            assert cp.stdout.strip() == str(i), cp.stderr
        assert srv.count_connections() == 1 and srv.count_logins() == 1


# ------------------------------------------------------------------ SLURM
def test_slurm_array_and_afterok_over_ssh(ssh_run, slurm_cluster):
    d = f"~/infra-slurm-{os.getpid()}"
    script = "#!/bin/bash\n#SBATCH -o arr-%A_%a.out\necho task $SLURM_ARRAY_TASK_ID; sleep 1\n"
    rc, out, err = ssh_run(
        f"rm -rf {d}; mkdir -p {d} && cd {d} && cat > arr.sh <<'EOF'\n{script}EOF\n"
        "sbatch --parsable --array=0-3%2 arr.sh"
    )
    assert rc == 0, err
    array_id = out.strip().split(";")[0]
    rc, out, err = ssh_run(
        f"cd {d} && sbatch --parsable --dependency=afterok:{array_id} -o after.out --wrap 'echo after-ok'"
    )
    assert rc == 0, err
    dep_id = out.strip().split(";")[0]
    rc, out, _ = ssh_run(f"squeue -h -o '%i %T' -j {dep_id}")
    assert rc == 0 and "PENDING" in out  # waits for the whole array
    t0 = time.monotonic()
    states = slurm_cluster.wait_job(array_id, timeout=120)
    assert sorted(states) == [f"{array_id}_{i}" for i in range(4)]
    assert set(states.values()) == {"COMPLETED"}
    assert set(slurm_cluster.wait_job(dep_id, timeout=60).values()) == {"COMPLETED"}
    rc, out, _ = ssh_run(f"cd {d} && cat after.out arr-{array_id}_*.out")
    assert out.split("\n")[0] == "after-ok" and sorted(out.split()[1:]) == sorted(["task"] * 4 + ["0", "1", "2", "3"])
    assert time.monotonic() - t0 < 120
    ssh_run(f"rm -rf {d}")


def test_slurm_max_array_size(ssh_run, slurm_cluster):
    rc, out, err = ssh_run(f"sbatch --array=0-{SLURM_MAX_ARRAY_SIZE} --wrap true")
    assert rc != 0 and "Invalid job array specification" in err
    rc, out, err = ssh_run(
        f"cd /tmp && sbatch --parsable -o /dev/null --array=0-{SLURM_MAX_ARRAY_SIZE - 1} --wrap true"
    )
    assert rc == 0, err
    slurm_cluster.wait_job(out.strip(), timeout=120)


def test_srun_over_ssh(ssh_run):
    rc, out, err = ssh_run("srun -n1 sh -c 'echo $SLURM_JOB_ID-$SLURM_NTASKS'", timeout=60)
    assert rc == 0 and out.strip().endswith("-1"), err


def test_slurm_loopback_only(slurm_cluster):
    conf = slurm_cluster.conf_path.read_text()
    for key in ("SlurmctldPort", "SlurmdPort"):
        port = int(conf.split(f"{key}=")[1].split()[0])
        assert listening_addresses(port) == ["127.0.0.1"], key


def test_slurm_stop_ends_running_jobs():
    with LocalSlurm() as c:
        jid = c.run(
            ["sbatch", "--parsable", "-o", "/dev/null", "--chdir", "/tmp", "--wrap", "sleep 300"]
        ).stdout.strip()
        wait_for(lambda: c.job_states(jid).get(jid) == "RUNNING", 30, "job running")
        job_pids = wait_for(lambda: len(c.job_pids()) >= 2 and c.job_pids(), 10, "slurmstepd + job processes")
        daemons = [p.pid for p in c._procs.values()]
    assert not any(pid_alive(p) for p in job_pids + daemons)


# ------------------------------------------------------------------ images, podman
def test_base_image_has_python_venv(base_image):
    cp = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--network",
            "none",
            base_image.name,
            "sh",
            "-c",
            "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'import ssl, sys; print(sys.version_info[:2])'",
        ],
        env=base_image.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == "(3, 11)"


@pytest.fixture(scope="module")
def user_dir(ssh_server):
    d = shared_tmpdir("mlops-infra-user-")
    os.chown(d, ssh_server.uid, ssh_server.gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def user_image(rootless_podman, base_image, ssh_run):
    rc, out, err = ssh_run(f"podman load -i {base_image.archive}")
    assert rc == 0 and f"Loaded image: {base_image.name}" in out, err
    return base_image.name


def test_podman_rootless_run_over_ssh(user_image, user_dir, ssh_run, rootless_podman):
    (user_dir / "x.env").write_text("CANARY=infra-canary-123\n")
    (user_dir / "in.txt").write_text("from-host\n")
    rc, out, err = ssh_run(
        f"podman run --rm --network none --env-file {user_dir}/x.env -v {user_dir}:/project "
        f'{user_image} python3 -c \'import os; print(os.environ["CANARY"]); '
        'print(open("/project/in.txt").read().strip())\''
    )
    assert rc == 0, err
    assert out.split() == ["infra-canary-123", "from-host"]
    rc, out, _ = ssh_run(
        "podman info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}} {{.Store.GraphRoot}}'"
    )
    assert out.split() == ["runc", "overlay", f"{rootless_podman.workdir}/storage"]


def test_charliecloud_over_ssh(user_image, user_dir, ssh_run):
    res = charliecloud_probe(ssh_run, user_image, str(user_dir))
    assert res["podman export | tar"][0], res["podman export | tar"][1]
    if not res.get("ch-run", (False, "no image dir"))[0]:
        pytest.skip(f"ch-run does not work here: {res.get('ch-run')}")
    assert res["ch-convert -i podman"][0], res["ch-convert -i podman"][1]


def test_registry_push_with_buildah(registry, base_image):
    assert listening_addresses(registry.port) == ["127.0.0.1"]
    ref = f"{registry.host}/group/proj/model:abc123"
    cp = subprocess.run(
        ["buildah", "push", "--tls-verify=false", base_image.name, f"docker://{ref}"],
        env=base_image.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cp.returncode == 0, cp.stderr
    assert registry.tags("group/proj/model") == ["abc123"]
    assert "group/proj/model" in registry.catalog()
