"""A private single-node SLURM 22.05 cluster (own munged, own ports, own state).

Nothing system-wide is used: munged runs as user ``munge`` with its own key and
socket in the workdir (slurm.conf ``AuthInfo=socket=...`` makes every SLURM
daemon and client use that socket), slurmctld/slurmd get free ports, and all
state/spool/log files live in the workdir.  A system munged or an old
slurmctld left by an earlier session is ignored, not reused.

Client commands find the cluster only through ``SLURM_CONF``:
 * locally: ``subprocess.run([...], env=cluster.env)``;
 * over SSH (the test user's ``ssh host sbatch ...`` / paramiko exec_command):
   pass ``cluster.ssh_env`` to ``TotpSshServer(setenv=...)`` or
   ``server.set_env(...)``.  That is sshd ``SetEnv``, which applies to every
   exec/shell session without depending on the user's shell start-up files
   (Debian's ~/.bashrc returns early for non-interactive shells).
"""

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

from ._util import InfraError, Service, check_traversable, pid_alive, run, shared_tmpdir, stop_pid, wait_for
from .ports import free_port

TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}


class LocalSlurm(Service):
    """Context manager: ``with LocalSlurm(max_array_size=10) as c: c.run(['sinfo'])``.

    Attributes: conf_path, env (full env for local clients), ssh_env
    ({'SLURM_CONF': ...} for sshd SetEnv), node, partition, workdir.
    """

    def __init__(
        self,
        workdir=None,
        max_array_size: int = 1001,
        min_job_age: int = 300,
        cpus: int = None,
        real_memory: int = 4000,
        partition: str = "debug",
        extra_conf: str = "",
    ):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else shared_tmpdir("mlops-slurm-")
        self.max_array_size, self.min_job_age = max_array_size, min_job_age
        self.cpus = cpus or os.cpu_count() or 1
        self.real_memory, self.partition, self.extra_conf = real_memory, partition, extra_conf
        self.node = socket.gethostname().split(".")[0]  # slurmd identifies itself by it
        self.conf_path = self.workdir / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf_path)}
        self.ssh_env = {"SLURM_CONF": str(self.conf_path)}
        self._procs = {}

    # ------------------------------------------------------------ start
    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        check_traversable(self.workdir)  # slurm, munge and job users read files here
        w = self.workdir
        self.munge_dir, self.munge_sock_dir = w / "munge", w / "munge-run"
        self.socket = self.munge_sock_dir / "munge.socket"
        self.state, self.spool, self.logs = w / "state", w / "spool", w / "log"
        for d, owner, mode in (
            (self.munge_dir, "munge", 0o700),
            (self.munge_sock_dir, "munge", 0o755),
            (self.state, "slurm", 0o755),
            (self.spool, "root", 0o755),
            (self.logs, "slurm", 0o755),
        ):
            d.mkdir(exist_ok=True)
            d.chmod(mode)
            shutil.chown(d, owner, owner)
        self._start_munged()
        self._write_conf()
        self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D"], self.logs / "slurmctld.log")
        wait_for(
            lambda: self.run(["scontrol", "ping"], check=False).stdout.count("UP") > 0,
            30,
            "slurmctld to answer ping",
            logs=[self.logs / "slurmctld.log"],
        )
        self._spawn("slurmd", ["/usr/sbin/slurmd", "-D", "-N", self.node], self.logs / "slurmd.log")
        self.wait_idle()
        return self

    def _start_munged(self):
        key = self.munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))  # fresh key: no trust shared with other clusters
        key.chmod(0o400)
        shutil.chown(key, "munge", "munge")
        log = self.munge_dir / "munged.log"
        # Popen(user=...) so the PID we keep IS munged (-F: no fork)
        self._procs["munged"] = subprocess.Popen(
            [
                "/usr/sbin/munged",
                "-F",
                f"--socket={self.socket}",
                f"--key-file={key}",
                f"--pid-file={self.munge_dir}/munged.pid",
                f"--log-file={log}",
                f"--seed-file={self.munge_dir}/munged.seed",
            ],
            user="munge",
            group="munge",
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=open(self.munge_dir / "munged.out", "ab"),
            stderr=subprocess.STDOUT,
        )

        def ok():
            if self._procs["munged"].poll() is not None:
                raise InfraError("munged exited")
            cred = subprocess.run(["munge", "-n", "-S", str(self.socket)], capture_output=True)
            return (
                cred.returncode == 0
                and subprocess.run(
                    ["unmunge", "-S", str(self.socket)], input=cred.stdout, capture_output=True
                ).returncode
                == 0
            )

        wait_for(ok, 20, "munged to issue credentials", logs=[log, self.munge_dir / "munged.out"])

    def _write_conf(self):
        s, logs, w = self.state, self.logs, self.workdir
        conf = f"""# written by tests/infra/slurm.py
ClusterName=mlopstest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation={s}
SlurmdSpoolDir={self.spool}
SlurmctldPidFile={w}/slurmctld.pid
SlurmdPidFile={w}/slurmd.pid
SlurmctldLogFile={logs}/slurmctld.log
SlurmdLogFile={logs}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MaxArraySize={self.max_array_size}
MinJobAge={self.min_job_age}
ReturnToService=2
SchedulerParameters=sched_interval=5,batch_sched_delay=0,sched_min_interval=0
DependencyParameters=kill_invalid_depend
JobCompType=jobcomp/filetxt
JobCompLoc={logs}/jobcomp.txt
AccountingStorageType=accounting_storage/none
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory} State=UNKNOWN
PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
{self.extra_conf}
"""
        self.conf_path.write_text(conf)
        self.conf_path.chmod(0o644)

    def _spawn(self, name, cmd, log):
        out = open(self.workdir / f"{name}.out", "ab")
        self._procs[name] = subprocess.Popen(
            cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        self._logs = getattr(self, "_logs", []) + [log, self.workdir / f"{name}.out"]

    # ------------------------------------------------------------ use
    def run(self, cmd, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a SLURM client command as root against this cluster."""
        return run(cmd, env=self.env, check=check, timeout=timeout)

    def node_state(self) -> str:
        return self.run(["sinfo", "-h", "-N", "-o", "%t"], check=False).stdout.strip()

    def wait_idle(self, timeout: float = 60):
        """Bounded wait until the node is idle (schedulable)."""
        for name, p in self._procs.items():
            if p.poll() is not None:
                raise InfraError(f"{name} exited rc={p.returncode}")
        wait_for(
            lambda: self.node_state() == "idle",
            timeout,
            f"node {self.node} idle (now {self.node_state()!r})",
            logs=self._logs,
        )

    def job_states(self, job_id) -> dict:
        """{'<jobid>' or '<jobid>_<task>': STATE} from ``scontrol show job``
        (kept MinJobAge s after the end; there is no sacct without accounting)."""
        cp = self.run(["scontrol", "-o", "show", "job", str(job_id)], check=False)
        states = {}
        for line in cp.stdout.splitlines():
            f = dict(re.findall(r"(\w+)=(\S*)", line))
            key = f.get("JobId", "?")
            if f.get("ArrayJobId") and f.get("ArrayTaskId"):
                key = f"{f['ArrayJobId']}_{f['ArrayTaskId']}"
            states[key] = f.get("JobState", "?")
        return states

    def wait_job(self, job_id, timeout: float = 120) -> dict:
        """Bounded wait until every task of ``job_id`` is in a terminal state."""

        def done():
            st = self.job_states(job_id)
            return st if st and all(v in TERMINAL for v in st.values()) else None

        return wait_for(
            done, timeout, f"job {job_id} to finish (now {self.job_states(job_id)})", logs=self._logs, interval=0.5
        )

    def jobcomp_text(self) -> str:
        p = self.logs / "jobcomp.txt"
        return p.read_text() if p.exists() else ""

    # ------------------------------------------------------------ stop
    def stop(self):
        try:
            self._cancel_all()
        except Exception:  # never let a hung client keep the daemons alive
            pass
        for name in ("slurmd", "slurmctld", "munged"):
            p = self._procs.pop(name, None)
            if p is not None:
                stop_pid(p)
        # slurmstepd and job processes survive slurmd; they carry our
        # SLURM_CONF in their environment, which identifies them as ours
        for pid in self.job_pids():
            stop_pid(pid, timeout=3)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _cancel_all(self):
        if not (self._procs.get("slurmctld") and self._procs["slurmctld"].poll() is None):
            return
        ids = self.run(["squeue", "-h", "-o", "%A"], check=False, timeout=20).stdout.split()
        if ids:
            self.run(["scancel", *ids], check=False, timeout=20)
            wait_for(
                lambda: not self.run(["squeue", "-h"], check=False).stdout.strip(),
                20,
                "cancelled jobs to leave the queue",
            )

    def job_pids(self) -> list:
        """slurmstepd and job processes of THIS cluster: environ has our
        SLURM_CONF and (comm slurmstepd or SLURM_JOB_ID set).  SSH sessions with
        our SLURM_CONF via SetEnv but no job id are not included."""
        needle = f"SLURM_CONF={self.conf_path}".encode()
        pids = []
        for d in filter(str.isdigit, os.listdir("/proc")):
            try:
                env = Path(f"/proc/{d}/environ").read_bytes().split(b"\0")
                if needle in env and (
                    Path(f"/proc/{d}/comm").read_text().strip() == "slurmstepd"
                    or any(e.startswith(b"SLURM_JOB_ID=") for e in env)
                ):
                    pids.append(int(d))
            except OSError:
                continue
        return [p for p in pids if pid_alive(p)]

    def _started(self) -> bool:
        return bool(self._procs)
