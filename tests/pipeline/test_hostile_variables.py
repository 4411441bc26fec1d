"""Issue 17.1/17.2 under gitlab-ci-local: pipeline, trigger and manual-job variables cannot steer a job
that holds a secret (contract F).

The rendered default project's CI/CD variables are canaries scoped to the jobs' environment `hpc/*` (as
GitLab scopes them: .gitlab/ci-variables.yml), the cluster is a TCP stand-in on 127.0.0.1 (an SSH
banner, then it hangs up: the jobs get as far as logging in), and every hostile variable of
support/hostile_ci.py is replayed at once: once as the variables of a triggered pipeline (the trigger
API's `variables[...]`), once of a scheduled one, once as the variables a person types when starting
the manual cluster jobs. After each run: no planted payload ran (plant/markers/ is empty; TMPDIR
pointed there too), the attacker's index and HTTP server received nothing, the only connections went
to the cluster stand-in, and no canary is in any log, artifact, job directory, cache or file the
attacker can read. The shell and loader variables (BASH_ENV, LD_PRELOAD, ...) are replayed the way
GitLab's runner sets them (exported inside the job script: shells/bash.go), because gitlab-ci-local
starts its own bash with them in the environment, where they act before any line of any job.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from support import hostile_ci as hc
from support import pipeline as ps
from support.render import render

pytestmark = [
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        ps.gcl_version() != ps.GCL_VERSION,
        reason=f"needs gitlab-ci-local {ps.GCL_VERSION} (npm i -g gitlab-ci-local@{ps.GCL_VERSION})",
    ),
]

CANARIES = {
    "HPC_TOTP_SECRET": "CANARYTOTP" + base64.b32encode(secrets.token_bytes(10)).decode(),  # valid base32
    "HPC_PASSWORD": "canary-pw-" + secrets.token_hex(8),
    "MLOPS_TRIGGER_TOKEN": "glptt-canary" + secrets.token_hex(10),
    "WANDB_API_KEY": "c0ffee" + secrets.token_hex(17),
}


def _scoped(name: str, value: str, kind: str = "variable") -> str:
    """One variable of gitlab-ci-local's variables file, visible only in environments hpc/* (as in GitLab)."""
    block = "".join(f"      {line}\n" for line in value.splitlines())
    return f"{name}:\n  type: {kind}\n  values:\n    'hpc/*': |\n{block}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cache = Path(os.environ.get("MLOPS_TEST_CACHE") or tmp_path_factory.mktemp("cache"))
    root = tmp_path_factory.mktemp("hostile")
    plant = hc.Plant(root / "plant")
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    key_canary = key.read_text().splitlines()[2]  # a line of the key's body
    with hc.TcpRecorder() as cluster, hc.TcpRecorder(banner=b"") as attacker_tcp:
        project = render(
            root / "render",
            hpc_host="127.0.0.1",
            hpc_port=cluster.port,
            hpc_auth="totp+password",
            scheduler="slurm",
            wandb_mode="offline",
        )
        wheels = ps.locked_wheels(project, cache)
        with (
            ps.LocalIndex(wheels) as index,
            ps.LocalIndex(plant.wheels) as attacker_index,
            ps.LocalIndex(root / "empty") as attacker_http,
        ):
            ps.use_index(project, index.url)
            pinned = f"[127.0.0.1]:{cluster.port} {key.with_suffix('.pub').read_text()}"
            (project / ".gitlab" / "known_hosts").write_text(pinned)  # host keys are committed (contract D)
            ps.git_init(project)
            variables = project / ".gitlab-ci-local-variables.yml"
            variables.write_text(
                _scoped("HPC_SSH_PRIVATE_KEY", key.read_text(), "file")
                + "".join(_scoped(name, value) for name, value in CANARIES.items())
            )
            variables.chmod(0o600)
            yield {
                "project": project,
                "home": root / "gcl-home",
                "plant": plant,
                "cluster": cluster,
                "attacker_tcp": attacker_tcp,
                "index": index,
                "attacker_index": attacker_index,
                "attacker_http": attacker_http,
                "canaries": [*CANARIES.values(), key_canary],
                "hostile": {
                    **hc.variables(plant, attacker_http.base, attacker_index.url),
                    # a second attacker server for anything that connects by host and port
                    "MLOPS_ATTACKER_TCP": f"127.0.0.1:{attacker_tcp.port}",
                },
            }


def secret_jobs(p) -> dict[str, dict]:
    """The jobs that get the hpc/* variables: those with an environment hpc/<cluster> (from the expanded
    pipeline), each with its `when` on a protected ref (from gitlab-ci-local's job list)."""
    listed = ps.list_jobs(p["project"], p["home"], "CI_COMMIT_REF_PROTECTED=true")
    out = {}
    for name, job in _preview(p).items():
        env = job.get("environment") if isinstance(job, dict) else None
        env = env.get("name") if isinstance(env, dict) else env
        if isinstance(env, str) and env.startswith("hpc/") and not name.startswith("."):
            out[name] = {**job, "when": listed[name]["when"]}
    return out


def gcl(p, *args, **variables):
    variables = {"CI_COMMIT_REF_PROTECTED": "true", **variables}
    argv = [a for name, value in variables.items() for a in ("--variable", f"{name}={value}")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    return ps.gcl(p["project"], p["home"], *args, *argv, "--ignore-predefined-vars", ",".join(variables), env=env)


def ran(out: str) -> set[str]:
    return set(re.findall(r"^ *(?:PASS|FAIL|WARN) +(\S+)", out, re.MULTILINE))


def leaks(p, out: str) -> list[str]:
    """Where a canary is: gitlab-ci-local's output, every file of its state (logs, artifacts, job dirs,
    cache) but the runner's own copies of the variables file, the attacker's files, the servers' logs,
    leftover job temp dirs."""
    found = []
    for canary in p["canaries"]:
        if canary in out:
            found.append(f"gitlab-ci-local output: {canary[:12]}...")
    roots = [p["project"] / ".gitlab-ci-local", p["plant"].root, *Path("/tmp").glob("mlops-job.*")]
    for root in roots:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            if path.is_file() and not path.is_symlink() and path.name != ".gitlab-ci-local-variables.yml":
                data = path.read_bytes()
                found += [f"{path}: {c[:12]}..." for c in p["canaries"] if c.encode() in data]
    for server in ("index", "attacker_index", "attacker_http"):
        text = repr(p[server].requests)
        found += [f"{server} log: {c[:12]}..." for c in p["canaries"] if c in text]
    for conn in p["cluster"].connections + p["attacker_tcp"].connections:
        found += [f"tcp stand-in: {c[:12]}..." for c in p["canaries"] if c.encode() in conn["data"]]
    return found


def assert_not_steered(p, proc, expected_jobs: set[str]) -> None:
    """No payload ran in a job that holds a secret or in the tool job (whose artifact they install);
    jobs without the hpc/* variables (template-check) that a payload did run in are printed: what
    only GitLab's pipeline-variable setting prevents (README: what the product cannot enforce)."""
    out = proc.stdout + proc.stderr
    assert expected_jobs <= ran(out), f"the jobs did not run: {sorted(ran(out))}\n{out[-4000:]}"
    guarded = {*secret_jobs(p), "tool"}
    steered = p["plant"].ran(guarded)
    assert steered == [], f"planted code ran: {steered}\n{out[-4000:]}"
    others = sorted({n.split("--")[1] for n in p["plant"].ran()})
    print(f"jobs without the cluster's variables that a payload ran in: {others}")
    assert p["attacker_index"].requests == [], [r["path"] for r in p["attacker_index"].requests]
    assert p["attacker_http"].requests == [], [r["path"] for r in p["attacker_http"].requests]
    assert p["attacker_tcp"].connections == []
    assert not leaks(p, out), leaks(p, out)


def test_a_triggered_pipeline_with_hostile_variables_is_not_steered(world):
    """The trigger API's variables (CI_PIPELINE_SOURCE=trigger): the tool job and every cluster's
    collect-triggered job run; nothing planted runs, nothing reaches the attacker, no canary leaves."""
    p = world
    jobs = {n for n, j in secret_jobs(p).items() if n.startswith("collect-triggered")}
    assert jobs, "no collect-triggered job holds the cluster's variables"
    p["plant"].clear()
    proc = gcl(p, CI_PIPELINE_SOURCE="trigger", MLOPS_TRIGGER="collect", **p["hostile"])
    assert_not_steered(p, proc, jobs)
    out = (proc.stdout + proc.stderr)[-3000:]
    assert p["cluster"].connections, f"the collect job never got as far as the cluster (an empty proof):\n{out}"


def test_a_scheduled_pipeline_with_hostile_variables_is_not_steered(world):
    p = world
    jobs = {n for n, j in secret_jobs(p).items() if n.startswith("collect-scheduled")}
    assert jobs
    p["plant"].clear()
    proc = gcl(p, CI_PIPELINE_SOURCE="schedule", **p["hostile"])
    assert_not_steered(p, proc, jobs)


def test_manual_cluster_jobs_with_hostile_variables_typed_at_the_click_are_not_steered(world):
    """The variables a person types when starting deploy/status/collect/cancel (GitLab's manual-job
    variables), every hostile one at once, for every manual job that holds a secret."""
    p = world
    jobs = {n for n, j in secret_jobs(p).items() if j["when"] == "manual"}
    assert {n.split("-")[0] for n in jobs} >= {"deploy", "status", "collect", "cancel"}, sorted(jobs)
    tool = gcl(p, "tool")  # the push pipeline's tool job (no hostile variables there)
    assert tool.returncode == 0, (tool.stdout + tool.stderr)[-3000:]
    p["plant"].clear()
    # One job a run, as a click starts it: each gets as far as its first mlops step (deploy stops at the
    # missing build, the others at the login), so every payload had its chance to run. --manual lists them
    # all: gitlab-ci-local refuses a named job whose `needs` is a manual job not listed there.
    manual = [a for name in sorted(jobs) for a in ("--manual", name)]
    for name in sorted(jobs):
        proc = gcl(p, name, *manual, HPC_OTP="123456", **p["hostile"])
        assert_not_steered(p, proc, {name})


def _preview(p) -> dict:
    """The pipeline as GitLab would run it (inputs interpolated), from `gitlab-ci-local --preview`."""
    proc = subprocess.run(
        [ps.GCL, "--preview", "--home", str(p["home"])], cwd=p["project"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    loader = type("L", (yaml.SafeLoader,), {})
    loader.add_constructor("!reference", lambda ld, node: ld.construct_sequence(node))
    return yaml.load(proc.stdout[proc.stdout.find("---") :] if "---" in proc.stdout else proc.stdout, Loader=loader)


def test_shell_and_loader_variables_exported_as_gitlabs_runner_does_are_not_honoured(world, tmp_path):
    """GitLab's runner writes every job variable as an `export NAME=value` line of the job script it
    pipes to bash (gitlab-runner shells/bash.go, BashWriter.Variable), then the job's lines. So
    replayed here: BASH_ENV, ENV, PS4 + SHELLOPTS, BASHOPTS, PROMPT_COMMAND, GCONV_PATH and (with a C
    compiler) LD_PRELOAD of a library that runs code, plus every other hostile variable, then each
    secret job's script lines as GitLab would run them, in a copy of the job's directory."""
    p = world
    tool = ps.artifacts(p["project"], "tool")
    if not (tool / ".mlops-tool").is_dir():
        assert gcl(p, "tool").returncode == 0
    pipeline = _preview(p)
    p["plant"].clear()
    hostile = {**p["hostile"], **hc.shell_variables(p["plant"])}
    secrets_env = {
        **CANARIES,
        "HPC_SSH_PRIVATE_KEY": str(tmp_path / "key"),
        "CI_COMMIT_REF_PROTECTED": "true",
        "CI_JOB_NAME": "x",
    }
    shutil.copy(p["project"] / ".gitlab-ci-local-variables.yml", tmp_path / "vars.yml")
    (tmp_path / "key").write_text(p["canaries"][-1] + "\n")
    for name in secret_jobs(p):
        build = tmp_path / name
        subprocess.run(["git", "clone", "-q", str(p["project"]), str(build)], check=True)
        shutil.copytree(tool / ".mlops-tool", build / ".mlops-tool")
        lines = [f"export {k}={shlex.quote(v)}" for k, v in {**secrets_env, **hostile}.items()]
        script = "\n".join([*lines, *pipeline[name]["script"]]) + "\n"
        proc = subprocess.run(
            ["bash", "--login"],
            input=script,
            cwd=build,
            capture_output=True,
            text=True,
            timeout=600,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        out = proc.stdout + proc.stderr
        assert "job.sh" not in out or "refusing" not in out, out[-3000:]
        assert p["plant"].ran() == [], f"{name}: planted code ran: {p['plant'].ran()}\n{out[-3000:]}"
        assert not [c for c in p["canaries"] if c in out], out[-3000:]
    assert p["attacker_index"].requests == [] and p["attacker_http"].requests == []
    assert p["attacker_tcp"].connections == []
