"""The runtimes for real on the local cluster (sshd + TOTP, SLURM, the cluster user unprivileged):
Apptainer 1.4 (issue 18.1) next to podman and charliecloud, and hostile research code on each
(issue 17.3, contract C).

Apptainer runs as on a cluster without setuid: the cluster user's `apptainer` is Debian sid's
package, run unprivileged through tests/support/apptainer (README.md there). In order:
  1. deploy (the lower images as SIFs, each code layer as a squashfs overlay), the SLURM sweep,
     collect;
  2. a code-only change on a second commit: the deploy sends kilobytes and builds one small
     squashfs (no SIF), and the sweep runs the new code;
  3. no /dev/fuse the user can open: deploy says why and how to fix it, falls back to sandbox
     directories, and the sweep runs from them;
  4. for podman, charliecloud and apptainer: hostile params/data/model code (support/hostile_stage.py)
     tries to read the trigger token, the user's ~/.ssh, the other configurations and runs, a file
     in the host's /tmp, the environment, command line and cwd of another process of the user (and
     to signal it), and to append to the job scripts and argv files, through the plain paths,
     /project and /proc/<pid>/root|cwd; it plants links in envs/, data/ and results/. No canary
     appears in any artifact, output or file of the run, and no host-side file outside the job's
     directories changes.
Figures (deploy seconds and bytes per runtime, the fallback's cost) are printed; run with -s.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.infra._util import shared_tmpdir
from support.infra.apptainer import ApptainerForUser
from support.project import build, git_commit, mlops, ok, set_toml
from support.render import render

pytestmark = [pytest.mark.timeout(3600)]
HERE = Path(__file__).resolve().parent
PARAMETERS = {"fixed": {"horizon": 24, "test_fraction": 0.2, "seed": 0},
              "grid": {"window": [24, 48], "alpha": [0.1, 10.0]}}  # fmt: skip
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
RUNTIMES = ("podman", "charliecloud", "apptainer")  # every runtime the tests can run
CANARIES = {
    "token": "glptt-TOKENCANARY" + "4b1d" * 5,
    "home": "HOMECANARY" + "91ac" * 6,
    "tmp": "TMPCANARY" + "0e7f" * 6,
    "env": "ENVCANARY" + "d00d" * 6,
    "victim": "VICTIMCANARY" + "5eed" * 6,
}


@pytest.fixture(scope="module")
def appt(cluster):
    """Apptainer for the cluster user (the sudoers line of the root wrapper: removed at the end);
    `use(mode)` puts its fuse|nofuse directory first on the PATH of every SSH session and job."""
    srv = cluster["server"]
    base = dict(srv.setenv)
    with ApptainerForUser(srv.user) as a:
        print(f"\n{a.version} for {srv.user}")

        def use(mode: str, **extra: str) -> None:
            srv.set_env({**base, **extra, "PATH": f"{a.path(mode)}:{SYSTEM_PATH}"})

        a.use = use
        yield a
        srv.set_env(base)


@pytest.fixture(scope="module")
def project(cluster, store_env, gitlab, tmp_path_factory) -> Path:
    srv = cluster["server"]
    proj = render(tmp_path_factory.mktemp("render"), gitlab_host=gitlab.host, hpc_host=srv.host, hpc_port=srv.port,
                  hpc_user=srv.user, hpc_workdir=str(cluster["workdir"]), hpc_auth="totp", scheduler="slurm",
                  container_runtime="apptainer", wandb_mode="offline")  # fmt: skip
    (proj / "params" / "parameters.json").write_text(json.dumps(PARAMETERS, indent=1))
    set_toml(proj, "cluster", "cpus_per_task", "1")  # the single test node: 2 CPUs, 4000 MB
    set_toml(proj, "cluster", "mem", '"600M"')
    set_toml(proj, "cluster", "parallel", "2")
    git_commit(proj, "e2e project")
    build(proj, store_env)
    return proj


def deploy(project: Path, cluster: dict, name: str) -> dict:
    """`mlops deploy` with a report; returns {"proc", "report", "seconds"}."""
    t0 = time.monotonic()
    proc = ok(mlops(project, cluster, "deploy", "--report", f"{name}.json"))
    return {"proc": proc, "report": json.loads((project / f"{name}.json").read_text()),
            "seconds": time.monotonic() - t0}  # fmt: skip


def sweep(project: Path, cluster: dict, run_id: str, out: Path, env: dict | None = None) -> dict:
    """submit + collect --wait; returns {"submit", "collect", "summary", "out"}."""
    submit = ok(mlops(project, cluster, "submit", "--run-id", run_id, env_extra=env))
    collect = mlops(project, cluster, "collect", "--run-id", run_id, "--out", str(out), "--wait", "900")
    summary = json.loads(next(out.rglob("summary.json")).read_text())
    return {"submit": submit, "collect": collect, "summary": summary, "out": out}


def store_of(project: Path, cluster: dict) -> Path:
    return Path(cluster["workdir"]) / project.name / "images"


def du(path: Path) -> int:
    """Bytes of a file or tree, hard links counted once (du -sb)."""
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def figures(label: str, d: dict) -> str:
    images = d["report"]["images"]
    parts = [f"{n} {i['bytes_uploaded']:,} B {i['form']} {i['convert_seconds']}s" for n, i in images.items()]
    return f"{label}: {d['seconds']:.1f}s, {d['report']['bytes_uploaded']:,} B uploaded ({'; '.join(parts)})"


# ---------------------------------------------------------------- 1-3: Apptainer for real


@pytest.fixture(scope="module")
def first(project, cluster, appt, tmp_path_factory):
    appt.use("fuse")
    d = deploy(project, cluster, "deploy1")
    d["sweep"] = sweep(project, cluster, "a1", tmp_path_factory.mktemp("a1") / "results")
    print("\n" + figures("apptainer first deploy", d))
    return d


def test_apptainer_deploys_sifs_with_code_overlays_and_the_sweep_runs(first, project, cluster):
    images = first["report"]["images"]
    assert first["report"]["runtime"] == "apptainer" and not first["report"]["nofuse"]
    for name in ("params", "data", "model"):
        assert images[name]["form"] == "sif" and images[name]["converted"], images[name]
        assert images[name]["target"].endswith(".sif")
    counts = first["sweep"]["summary"]["counts"]
    assert counts["completed"] == 4, (counts, first["sweep"]["collect"].stderr)
    store = store_of(project, cluster)
    bases = [p for p in store.glob("base-*.sif") if not p.is_symlink()]
    assert len(bases) == 3 and all(p.is_symlink() for p in store.glob("model-*.sif"))


@pytest.fixture(scope="module")
def second(first, project, cluster, store_env, tmp_path_factory):
    """A code-only change on a second commit: model/train.py prints one more line."""
    store = store_of(project, cluster)
    before = {p.name: p.stat().st_mtime for p in store.glob("base-*.sif")}
    train = project / "model" / "train.py"
    train.write_text(train.read_text().replace("def main():\n", 'def main():\n    print("code version 2")\n', 1))
    git_commit(project, "a code-only change")
    build(project, store_env)
    d = deploy(project, cluster, "deploy2")
    d["bases"] = (before, {p.name: p.stat().st_mtime for p in store.glob("base-*.sif")})
    d["sweep"] = sweep(project, cluster, "a2", tmp_path_factory.mktemp("a2") / "results")
    print("\n" + figures("apptainer code-only deploy", d))
    return d


def test_a_code_only_change_sends_kilobytes_and_builds_one_small_squashfs(second, project, cluster):
    images = second["report"]["images"]
    assert images["params"]["bytes_uploaded"] == 0 and images["data"]["bytes_uploaded"] == 0
    assert not images["params"]["converted"] and not images["data"]["converted"]
    assert images["model"]["converted"] and 0 < images["model"]["bytes_uploaded"] <= 100_000, images["model"]
    before, after = second["bases"]
    assert before == after, "no SIF is built for a code-only change"
    overlay = Path(images["model"]["target"].removesuffix(".sif") + ".code.sqfs")
    assert overlay.stat().st_size < 1_000_000
    assert second["sweep"]["summary"]["counts"]["completed"] == 4
    logs = [p.read_text() for p in second["sweep"]["out"].rglob("log") if p.parent.name != "state"]
    assert logs and all("code version 2" in text for text in logs), "the sweep ran the new code (the overlay)"


@pytest.fixture(scope="module")
def nofuse(second, project, cluster, appt, tmp_path_factory):
    """The same commit where users cannot open /dev/fuse (this host's is 0600)."""
    appt.use("nofuse")
    try:
        d = deploy(project, cluster, "deploy3")
        d["sweep"] = sweep(project, cluster, "a3", tmp_path_factory.mktemp("a3") / "results")
    finally:
        appt.use("fuse")
    store = store_of(project, cluster)
    sif = sum(du(p) for p in store.glob("*.sif") if not p.is_symlink()) + sum(du(p) for p in store.glob("*.sqfs"))
    sandboxes = du(store) - du(store / "blobs") - sif  # what the fallback added (hard links counted once)
    d["disk"] = {"sif_and_overlays": sif, "sandboxes": sandboxes}
    print("\n" + figures("apptainer deploy without FUSE (sandboxes)", d))
    print(f"disk: SIFs + overlays {sif / 1e6:.1f} MB, sandbox trees {sandboxes / 1e6:.1f} MB")
    return d


def test_without_fuse_deploy_names_the_cause_and_the_fix_and_falls_back_to_sandboxes(nofuse):
    said = nofuse["proc"].stderr
    assert "/dev/fuse" in said and "Fix:" in said and "sandbox" in said, said
    assert "Permission denied" in nofuse["report"]["nofuse"]
    for name, image in nofuse["report"]["images"].items():
        assert image["form"] == "sandbox" and image["target"].endswith(".sandbox"), (name, image)
        assert not Path(image["target"].removesuffix(".sandbox") + ".sif").exists(), "the sif form is gone"
    counts = nofuse["sweep"]["summary"]["counts"]
    assert counts["completed"] == 4, (counts, nofuse["sweep"]["collect"].stderr)


# ---------------------------------------------------------------- 4: hostile research code


def _as_user(user: str, path: Path, text: str, mode: int = 0o600) -> None:
    path.write_text(text)
    path.chmod(mode)
    shutil.chown(path, user, user)


@pytest.fixture(scope="module")
def hostile(project, cluster, store_env, tmp_path_factory):
    """The project as hostile code would make it (one commit; its lower layers are the project's but
    for params, whose entrypoint is the attack), canaries on the cluster and a victim process."""
    srv = cluster["server"]
    home = Path(os.path.expanduser(f"~{srv.user}"))
    variant = tmp_path_factory.mktemp("hostile") / project.name
    shutil.copytree(project, variant, ignore=shutil.ignore_patterns(".mlops", "deploy*.json", ".git"))
    tmp_canary = shared_tmpdir("mlops-hostile-tmp-") / "canary.txt"
    victim = shared_tmpdir("mlops-hostile-victim-")
    _as_user(srv.user, victim / "victim.txt", CANARIES["victim"] + "\n")
    shutil.chown(victim, srv.user, srv.user)
    # another process of the cluster user (a login shell, an editor, a tool with a token on its command
    # line): a secret in its environment, its command line and its working directory
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={srv.user}", f"--regid={srv.user}", "--clear-groups",
         "bash", "-c", "sleep 3600; :", CANARIES["victim"]],
        cwd=victim, env={"PATH": SYSTEM_PATH, "VICTIM_SECRET": CANARIES["victim"]}, start_new_session=True,
    )  # fmt: skip
    runs = Path(cluster["workdir"]) / project.name / "runs"  # an attacker reads these from mlops.toml
    targets = {"runs": [str(runs / f"hostile-{rt}") for rt in RUNTIMES], "home": str(home),
               "tmp_canary": str(tmp_canary), "victim_pid": proc.pid}  # fmt: skip
    source = (HERE.parent / "support" / "hostile_stage.py").read_text()
    for stage in ("params", "data", "model"):
        (variant / stage / "hostile.py").write_text(source)
        (variant / stage / "hostile_targets.json").write_text(json.dumps(targets))
    dockerfile = variant / "params" / "Dockerfile"
    text = dockerfile.read_text()
    entry = next(line for line in text.splitlines() if line.startswith("ENTRYPOINT"))
    dockerfile.write_text(text.replace(entry, 'ENTRYPOINT ["python", "/app/hostile.py", "params"]'))
    for stage, script, real in (("data", "prepare.py", "real_prepare.py"), ("model", "train.py", "real_train.py")):
        (variant / stage / script).rename(variant / stage / real)
        (variant / stage / script).write_text(
            f'import runpy\n\nimport hostile\n\nhostile.run("{stage}")\nrunpy.run_path("{real}", run_name="__main__")\n'
        )
    (home / ".ssh").mkdir(exist_ok=True)
    shutil.chown(home / ".ssh", srv.user, srv.user)
    _as_user(srv.user, home / ".ssh" / "canary.env", f"HOSTILE_CANARY={CANARIES['home']}\n")
    _as_user(srv.user, tmp_canary, CANARIES["tmp"] + "\n")
    shutil.chown(tmp_canary.parent, srv.user, srv.user)
    try:
        git_commit(variant, "hostile code")
        build(variant, store_env)
        yield {"variant": variant, "home": home, "tmp_canary": tmp_canary, "victim": victim}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the victim and its sleep (a session of their own)
        proc.wait()
        (home / ".ssh" / "canary.env").unlink(missing_ok=True)
        shutil.rmtree(tmp_canary.parent, ignore_errors=True)
        shutil.rmtree(victim, ignore_errors=True)


def _snapshot(paths: list[Path]) -> dict[str, str]:
    """sha256 of each regular file (links and missing files recorded as such, never followed)."""
    found = {}
    for path in paths:
        if path.is_symlink():
            found[str(path)] = "link " + os.readlink(path)
        elif path.is_file():
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[str(path)] = "missing"
    return found


def _regular_files(root: Path) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(root):  # os.walk does not follow links to directories
        out += [Path(dirpath) / f for f in files if not (Path(dirpath) / f).is_symlink()]
    return out


@pytest.mark.parametrize("rt", RUNTIMES)
def test_hostile_research_code_reaches_nothing_of_the_host_side(rt, hostile, project, cluster, appt, gitlab,
                                                                slurm_cluster, tmp_path):  # fmt: skip
    variant = hostile["variant"]
    run_id = f"hostile-{rt}"
    run_dir = Path(cluster["workdir"]) / variant.name / "runs" / run_id
    set_toml(variant, "cluster", "runtime", f'"{rt}"')  # mlops.toml is in no image: the same build
    git_commit(variant, f"hostile code on {rt}")
    appt.use("fuse", MLOPS_JOB_CANARY=CANARIES["env"])  # a job environment with something secret in it
    outputs = [deploy(variant, cluster, f"deploy-{rt}")]
    print("\n" + figures(f"{rt} deploy of the hostile variant", outputs[0]))
    node = ["scontrol", "update", f"nodename={slurm_cluster.node}"]
    slurm_cluster.run([*node, "state=drain", "reason=e2e-snapshot"])  # nothing runs before the snapshot
    try:
        submit = ok(mlops(variant, cluster, "submit", "--run-id", run_id, env_extra=gitlab.ci_env(CANARIES["token"])))
        home = hostile["home"]
        watched = [*sorted((run_dir / "state" / "jobs").iterdir()), run_dir / "state" / "stage.env",
                   run_dir / "run.json", home / ".bashrc", home / ".ssh" / "canary.env", hostile["tmp_canary"],
                   hostile["victim"] / "victim.txt", run_dir / "results" / "planted.txt"]  # fmt: skip
        before = _snapshot(watched)
    finally:
        slurm_cluster.run([*node, "state=resume"])
    out = tmp_path / "results"
    collect = mlops(variant, cluster, "collect", "--run-id", run_id, "--out", str(out), "--wait", "900")
    outputs += [submit, collect]
    appt.use("fuse")
    # the sweep ran: the first configuration's env file was a link (refused), the others completed
    summary = json.loads(next(out.rglob("summary.json")).read_text())
    assert summary["counts"]["completed"] == 3 and summary["counts"]["failed"] == 1, (summary, collect.stderr)
    first_cid = (run_dir / "envs" / "ids.txt").read_text().split()[0]
    assert (run_dir / "envs" / f"{first_cid}.env").is_symlink()
    assert "not a regular file" in (run_dir / "results" / first_cid / "log").read_text()
    # the attacks ran (their findings came back as artifacts) ...
    findings = "\n".join(p.read_text(errors="replace") for p in out.rglob("hostile-*.txt"))
    lines = findings.splitlines()
    print(f"{rt}: {len(lines)} attempts came back, {sum(': GOT ' in x for x in lines)} succeeded (in the container)")
    print("\n".join(x for x in lines if "visible pids" in x))
    for attack in ("params read", "data read", "model read", "/state/trigger-token", "/state/jobs/task.sh",
                   "/.ssh/canary.env", "/proc/", "visible pids", "environment"):  # fmt: skip
        assert attack in findings, attack
    # ... and reached nothing: no canary in any artifact, any output, any file of the run
    texts = [(str(p), p.read_bytes()) for p in _regular_files(out)]
    texts += [(str(p), p.read_bytes()) for p in _regular_files(run_dir) if p != run_dir / "state" / "trigger-token"]
    for i, o in enumerate(outputs):
        proc = o["proc"] if isinstance(o, dict) else o
        texts.append((f"mlops output {i}", (proc.stdout + proc.stderr).encode()))
    for name, canary in CANARIES.items():
        leaked = [where for where, data in texts if canary.encode() in data or canary.encode().hex().encode() in data]
        assert not leaked, f"{rt}: the {name} canary reached {leaked}"
    # no host-side file outside the job's directories changed
    assert _snapshot(watched) == before
    assert not [line for line in lines if "signal 0 to the victim" in line and ": GOT" in line], "a process outside"
    if rt != "charliecloud":  # ch-run binds read-write only (README): data/ is the model's to change
        assert "GOT 'WROTE'" not in "\n".join(line for line in findings.splitlines() if "data/series.csv" in line)
