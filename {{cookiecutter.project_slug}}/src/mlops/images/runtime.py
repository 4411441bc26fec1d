"""Container runtimes on the cluster: what a deployed image is called, what a stage's container
sees, and the argv that runs it.

Pure functions returning argv lists: the cluster room writes them to state/jobs/*.argv
(`argv_file`, one word per line) and the shell files (cluster/shell/task.sh, stage.sh) replace the
placeholders @ENV_FILE@, @CID@ (the configuration id), @UID@ and @GID@ (the user's ids).

What a stage's container sees (docs/ARCHITECTURE.md, contract C), PROJECT_DIR=/project inside:
    params  envs/ rw at /project/envs
    data    data/ rw at /project/data
    model   data/ ro at /project/data and results/<cid>/ rw at /project/results/<cid>
The env file is given host-side (the runtime's env-file option reads it before the container
starts; it is never bound). state/ (job scripts, argv files, task records, the trigger token) and
the rest of the run directory are never bound. Per runtime:
    apptainer,   --containall: own PID and IPC namespaces, a clean environment, an empty home and
    singularity  /tmp; --no-mount hostfs,bind-paths,cwd: none of the site's `bind path` entries of
                 apptainer.conf (Apptainer >= 1.2, SingularityCE >= 3.11 know `bind-paths`; 1.0/1.1
                 and SingularityCE 3.7-3.10 warn and keep them), no current directory
    podman       only the binds; its own PID, IPC and mount namespaces; --userns=keep-id as the user
    charliecloud ch-run has no PID namespace and binds the host's /proc: `unshare -r -p -f
                 --mount-proc` gives it one, so the user's other processes are not visible (ch-run
                 then maps the user's ids back with --uid/--gid); -t: a private /tmp. ch-run 0.31
                 binds read-write only (data/ is writable for the model) and makes mount points only
                 in its /tmp: the image's /project links to /tmp/project (mlops.images.convert)

The forms a deployed image takes (images/convert.sh converts, `Image.form` says which):
    sif      apptainer/singularity: X.sif (a link to the lower image's SIF) + X.code.sqfs, run with
             --overlay X.code.sqfs:ro (a code-only change builds one small squashfs)
    sandbox  apptainer/singularity where the sif form cannot be mounted (no usable /dev/fuse): X.sandbox/
    podman   a tag in the user's podman store
    dir      charliecloud: X.ch/
Env files are NAME=value with no quotes (mlops.params): podman reads them literally, apptainer and
charliecloud parse the same lines the same way because values avoid shell-special characters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .layout import digest_hex

RUNTIMES = ("apptainer", "singularity", "podman", "charliecloud")
MOUNT = "/project"  # PROJECT_DIR in the images
WORKDIR = "/app"  # the Dockerfiles' WORKDIR: the stage folder
CH_MOUNT = "/tmp/project"  # charliecloud: where the image's /project link points (its private /tmp)
STAGE_NAMES = ("params", "data", "model")
# Placeholders the shell files fill in (cluster/shell/task.sh, stage.sh)
ENV_FILE, CID, UID, GID = "@ENV_FILE@", "@CID@", "@UID@", "@GID@"
# Apptainer: what `--no-mount` switches off besides what --containall already keeps out
NO_MOUNT = "hostfs,bind-paths,cwd"
FORMS = {"apptainer": ("sif", "sandbox"), "singularity": ("sif", "sandbox"), "podman": ("podman",),
         "charliecloud": ("dir",)}  # fmt: skip


def check_runtime(name: str) -> str:
    """The runtime name, or ValueError naming the choices."""
    if name not in RUNTIMES:
        raise ValueError(f"mlops.toml clusters.NAME.runtime: {name!r} is not one of {', '.join(RUNTIMES)}")
    return name


@dataclass(frozen=True)
class Split:
    """An image as the lower image (`base-<hex>`: every layer but the top one, shared by every
    commit with those layers: converted once) plus the blob of its top (code) layer."""

    base_key: str
    code_hex: str


@dataclass(frozen=True)
class Image:
    """One stage image on the cluster: its OCI layout in the store and what it became there."""

    stage: str
    digest: str
    store: str  # <cluster_root>/images
    slug: str
    runtime: str
    form: str = ""  # one of FORMS[runtime]; "" = the runtime's first (apptainer: sif)

    @property
    def key(self) -> str:
        return f"{self.stage}-{digest_hex(self.digest)}"

    @property
    def layout(self) -> str:
        """The image's OCI layout on the cluster (one image in it; blobs are the store's)."""
        return f"{self.store}/refs/{self.key}"

    @property
    def overlay(self) -> str:
        """Apptainer/Singularity sif form: the code layer as a read-only squashfs overlay of X.sif."""
        return f"{self.store}/{self.key}.code.sqfs"

    @property
    def podman_ref(self) -> str:
        # Tagged by digest, so an image that did not change is found again and not reloaded.
        return f"localhost/{self.slug}-{self.stage}:{digest_hex(self.digest)[:20]}"

    @property
    def kind(self) -> str:
        """The form, checked against the runtime (ValueError for a wrong one)."""
        forms = FORMS[check_runtime(self.runtime)]
        form = self.form or forms[0]
        if form not in forms:
            raise ValueError(f"{self.runtime}: no image form {form!r} (one of {', '.join(forms)})")
        return form

    @property
    def target(self) -> str:
        """What the runtime runs: a .sif file, a sandbox or charliecloud directory, a podman reference."""
        return {
            "sif": f"{self.store}/{self.key}.sif",
            "sandbox": f"{self.store}/{self.key}.sandbox",
            "podman": self.podman_ref,
            "dir": f"{self.store}/{self.key}.ch",
        }[self.kind]

    def with_form(self, form: str) -> Image:
        """The same image in `form` (ValueError when the runtime has no such form)."""
        if form not in FORMS[check_runtime(self.runtime)]:
            raise ValueError(f"{self.runtime}: no image form {form!r} (one of {', '.join(FORMS[self.runtime])})")
        return replace(self, form=form)


@dataclass(frozen=True)
class Bind:
    """One directory of the run directory in a stage's container (`source` on the cluster)."""

    source: str
    target: str
    readonly: bool = False


def binds(stage: str, run_dir: str, config_id: str = CID) -> list[Bind]:
    """What a stage's container sees of the run directory (contract C; nothing else is bound)."""
    if stage == "params":
        return [Bind(f"{run_dir}/envs", f"{MOUNT}/envs")]
    if stage == "data":
        return [Bind(f"{run_dir}/data", f"{MOUNT}/data")]
    if stage == "model":
        return [
            Bind(f"{run_dir}/data", f"{MOUNT}/data", readonly=True),
            Bind(f"{run_dir}/results/{config_id}", f"{MOUNT}/results/{config_id}"),
        ]
    raise ValueError(f"unknown stage {stage!r} (one of {', '.join(STAGE_NAMES)})")


def run_argv(
    image: Image,
    run_dir: str,
    env_file: str = ENV_FILE,
    config_id: str = CID,
    gpu: bool = False,
    entrypoint: list[str] | None = None,
) -> list[str]:
    """argv that runs `image.stage`'s container with its binds (`binds`) and one env file.

    Nothing secret is ever on this line: the env file (0600) carries the configuration. The words
    may hold the placeholders @ENV_FILE@, @CID@, @UID@, @GID@ (`fill` replaces them).
    Raises ValueError for an unknown runtime, form or stage, or charliecloud without `entrypoint`.
    """
    mounts = binds(image.stage, run_dir, config_id)
    kind = image.kind
    if image.runtime in ("apptainer", "singularity"):
        argv = [image.runtime, "run", "--containall", "--no-mount", NO_MOUNT, "--env-file", env_file]
        for b in mounts:
            argv += ["--bind", f"{b.source}:{b.target}" + (":ro" if b.readonly else "")]
        argv += ["--pwd", WORKDIR] + (["--nv"] if gpu else [])
        if kind == "sif":
            return argv + ["--overlay", f"{image.overlay}:ro", image.target]
        return argv + [image.target]
    if image.runtime == "podman":
        # keep-id + --user: the stage runs as the cluster user (as under apptainer), so what it writes
        # is the user's, not a subordinate uid's (the images' USER 1000 would be one); host network
        # as apptainer/charliecloud have (rootless slirp needs /dev/net/tun).
        argv = ["podman", "run", "--rm", "--userns=keep-id", "--user", f"{UID}:{GID}", "--network=host",
                "--env-file", env_file]  # fmt: skip
        for b in mounts:
            argv += ["--volume", f"{b.source}:{b.target}" + (":ro" if b.readonly else "")]
        argv += ["--workdir", WORKDIR]
        if gpu:
            argv += ["--device", "nvidia.com/gpu=all"]  # CDI, as documented for rootless podman + NVIDIA
        return argv + [image.target]
    if not entrypoint:
        raise ValueError("charliecloud runs no ENTRYPOINT by itself: pass the stage's entrypoint")
    # unshare: a user namespace (as root in it, which ch-run maps back to the user's ids) that owns a
    # new PID namespace with its own /proc; --kill-child: the container dies with its parent.
    argv = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child",
            "ch-run", f"--uid={UID}", f"--gid={GID}", "--private-tmp", "--unset-env=*", "--set-env",
            f"--set-env={env_file}"]  # fmt: skip
    # start from an empty environment, apply the image's ENV (--set-env without a file), then ours
    argv += [f"--bind={b.source}:{CH_MOUNT}{b.target.removeprefix(MOUNT)}" for b in mounts]
    return argv + [f"--cd={WORKDIR}", image.target, "--", *entrypoint]


def fill(argv: list[str], env_file: str, config_id: str, uid: int, gid: int) -> list[str]:
    """The argv with its placeholders replaced (what the shell files do on the cluster)."""
    subs = {ENV_FILE: env_file, CID: config_id, UID: str(uid), GID: str(gid)}
    out = []
    for word in argv:
        for key, value in subs.items():
            word = word.replace(key, value)
        out.append(word)
    return out


def argv_file(argv: list[str]) -> str:
    """A container argv as the shell files read it: one word per line (ValueError for a newline in one)."""
    if any("\n" in word or "\r" in word for word in argv):
        raise ValueError("a container argv word contains a newline")
    return "".join(word + "\n" for word in argv)
