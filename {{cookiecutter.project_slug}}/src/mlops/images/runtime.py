"""Container runtimes on the cluster: how a deployed image is converted, and how a stage is run.

Pure functions that return argv lists / shell text; the SSH session sends them, unit tests read them.
Every runtime gets the same contract (docs/ARCHITECTURE.md): the run directory bind-mounted at
/project, the stage's env file, working directory /app, the image's ENTRYPOINT as the command.

Deploy (mlops.images.store) leaves each image as a small OCI layout `refs/<stage>-<id>/` whose
`blobs` is a symlink to the store's shared `blobs/`; conversion reads it (`oci:DIR:REF`):

    runtime       convert (once per image id)                            run
    apptainer     apptainer build BASE.sif oci:REFDIR:BASE (lower layers)  apptainer run --env-file ...
                  + the code layer as X.code.sqfs; X.sif -> BASE.sif       --overlay X.code.sqfs:ro X.sif
    singularity   the same with singularity                              singularity run ...
    podman        podman pull oci:REFDIR:REF; podman tag                 podman run --env-file ... REF
    charliecloud  ch-convert of BASE into BASE.ch (once), then cp -al      ch-run --set-env=FILE DIR -- ENTRYPOINT
                  BASE.ch DIR + the code layer unpacked into DIR

podman's pull copies only the layers its storage lacks (containers/image reuses a layer by digest),
so a code-only change loads one small layer. Apptainer/Singularity: a SIF of every layer but the
top one (BASE, keyed by the lower image's manifest: shared by every commit with the same lower
layers and runtime config, so built once) plus the top (code) layer as a read-only squashfs
overlay (`--overlay X.code.sqfs:ro`; documented for squashfs images by Apptainer); X.sif is a link
to BASE.sif. A code-only change builds one small squashfs, not a SIF. OCI whiteouts (.wh.*) in the
code layer are not carried into the overlay (a COPY layer has none). Charliecloud: the lower
image's tree is converted once (BASE.ch); each image is a hard-linked copy of it with the code layer
unpacked over it, when that layer is plain files under /app (else a full ch-convert of the image).

Env files are NAME=value with no quotes (mlops.params): podman reads them literally, apptainer and
charliecloud parse the same lines the same way because values avoid shell-special characters.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .layout import digest_hex

RUNTIMES = ("apptainer", "singularity", "podman", "charliecloud")
MOUNT = "/project"  # where every stage sees the run directory (PROJECT_DIR in the images)
WORKDIR = "/app"  # the Dockerfiles' WORKDIR: the stage folder


class Raw(str):
    """A shell word that must stay unquoted (e.g. "$ENV_FILE", expanded by the task wrapper)."""


def shell_join(argv: list[str]) -> str:
    return " ".join(a if isinstance(a, Raw) else shlex.quote(a) for a in argv)


@dataclass(frozen=True)
class Split:
    """How Apptainer/Singularity get an image: the lower image's ref in the store (`base-<hex>`, a SIF
    shared by every image with those lower layers) and the blob of the top (code) layer."""

    base_key: str
    code_hex: str


@dataclass(frozen=True)
class Image:
    """One stage image on the cluster: its OCI layout in the store and what it becomes after conversion."""

    stage: str
    digest: str
    store: str  # <workdir>/<slug>/images
    slug: str
    runtime: str

    @property
    def key(self) -> str:
        return f"{self.stage}-{digest_hex(self.digest)}"

    @property
    def layout(self) -> str:
        """The image's OCI layout on the cluster (index.json names it `key`; blobs are the store's)."""
        return f"{self.store}/refs/{self.key}"

    @property
    def overlay(self) -> str:
        """Apptainer/Singularity: the code layer as a read-only squashfs overlay of X.sif."""
        return f"{self.store}/{self.key}.code.sqfs"

    @property
    def podman_ref(self) -> str:
        # Tagged by digest, so an image that did not change is found again and not reloaded.
        return f"localhost/{self.slug}-{self.stage}:{digest_hex(self.digest)[:20]}"

    @property
    def target(self) -> str:
        """What the runtime runs: a .sif file, a podman image reference, or an unpacked directory."""
        if self.runtime in ("apptainer", "singularity"):
            return f"{self.store}/{self.key}.sif"
        if self.runtime == "podman":
            return self.podman_ref
        if self.runtime == "charliecloud":
            return f"{self.store}/{self.key}.ch"
        raise ValueError(f"mlops.toml cluster.runtime: {self.runtime!r} is not one of {', '.join(RUNTIMES)}")


def _podman_pull(image: Image) -> str:
    # `podman pull -q` prints the image id; only layers podman's storage lacks are copied. podman
    # names an image pulled from `oci:PATH` "localhost/PATH", which must be a valid reference: a
    # workdir with upper-case letters or a dot in it is not, so pull by the relative path refs/<key>.
    source = shlex.quote(f"oci:refs/{image.key}:{image.key}")
    return (
        f'ref=$(cd {shlex.quote(image.store)} && podman pull -q {source}) && test -n "$ref" '
        f'&& podman tag "$ref" {shlex.quote(image.podman_ref)}'
    )


def converted_test(image: Image) -> str:
    """Shell test that succeeds when the image is already converted (reused while its digest is unchanged)."""
    if image.runtime == "podman":
        return f"podman image exists {shlex.quote(image.podman_ref)}"
    if image.runtime in ("apptainer", "singularity"):
        return f"test -e {shlex.quote(image.target)} && test -e {shlex.quote(image.overlay)}"
    return f"test -e {shlex.quote(image.target)}"


def convert_command(image: Image, gpu: bool = False, split: Split | None = None) -> str:
    """Shell text that converts the deployed image; writes to a temp name and renames when complete.

    Apptainer/Singularity need `split` (deploy computes it from the image's layers).
    """
    target, part = shlex.quote(image.target), shlex.quote(image.target + ".part")
    if image.runtime in ("apptainer", "singularity"):
        if split is None:
            raise ValueError(f"{image.runtime}: converting needs the image's split (lower image + code layer)")
        # Documented syntax: `apptainer build IMAGE.sif oci:LAYOUT_DIR:REF` (an OCI layout source).
        base = f"{image.store}/{split.base_key}.sif"
        q_base, q_base_part = shlex.quote(base), shlex.quote(base + ".part")
        source = shlex.quote(f"oci:{image.store}/refs/{split.base_key}:{split.base_key}")
        code = shlex.quote(f"{image.store}/blobs/sha256/{split.code_hex}")
        tree, sqfs = shlex.quote(image.overlay + ".d"), shlex.quote(image.overlay)
        sqfs_part = shlex.quote(image.overlay + ".part")
        steps = [
            f"{{ test -e {q_base} || {{ rm -f {q_base_part} && {image.runtime} build {q_base_part} {source} "
            f"&& mv -f {q_base_part} {q_base}; }}; }}",
            f"rm -rf {tree} {sqfs_part}",
            f"mkdir -p {tree}",
            f"tar -xzf {code} -C {tree} --no-same-owner --no-same-permissions --exclude='.wh.*' --exclude='*/.wh.*'",
            f"mksquashfs {tree} {sqfs_part} -noappend -quiet -all-root",
            f"mv -f {sqfs_part} {sqfs}",
            f"rm -rf {tree}",
            f"ln -sfn {shlex.quote(split.base_key + '.sif')} {part}",
            f"mv -Tf {part} {target}",
        ]
        return " && ".join(steps)
    if image.runtime == "podman":
        return _podman_pull(image)
    if image.runtime == "charliecloud":
        full = _charliecloud_full(image, gpu)
        if split is None:
            return full
        return f"{{ {_charliecloud_incremental(image, gpu, split)}; }} || {{ {full}; }}"
    raise ValueError(f"mlops.toml cluster.runtime: {image.runtime!r} is not one of {', '.join(RUNTIMES)}")


def _charliecloud_full(image: Image, gpu: bool) -> str:
    # ch-convert reads podman's store (its "tar" input is a flattened export, not `docker save`).
    # The bind target /project must exist in the read-only image, so create it in the directory.
    target, part = shlex.quote(image.target), shlex.quote(image.target + ".part")
    steps = [
        f"({converted_test(Image(image.stage, image.digest, image.store, image.slug, 'podman'))} || "
        f"{{ {_podman_pull(image)}; }})",
        f"rm -rf {part}",
        f"ch-convert -i podman {shlex.quote(image.podman_ref)} {part}",
        f"mkdir -p {part}{MOUNT}",
    ]
    if gpu:
        steps.append(f"ch-fromhost --nvidia {part}")
    steps += [f"rm -rf {target}", f"mv {part} {target}"]
    return " && ".join(steps)


def _charliecloud_incremental(image: Image, gpu: bool, split: Split) -> str:
    """The lower image's tree (converted once, shared by every commit with those lower layers), copied
    with hard links, plus the code layer unpacked over it: a code-only change unpacks one small layer.

    Only for a top layer that is plain files under WORKDIR (what `COPY . /app/` makes): no whiteouts
    (.wh.*), no `..`, nothing outside /app, and /app a real directory in the lower tree; GNU tar
    unlinks a file before writing it, so the lower tree's hard-linked files are never changed. Anything
    else fails the check, and the caller falls back to a full conversion.
    """
    base = Image(image.stage, image.digest, image.store, image.slug, "charliecloud")
    base_dir = f"{image.store}/{split.base_key}.ch"
    q_base, q_base_part = shlex.quote(base_dir), shlex.quote(base_dir + ".part")
    base_ref = shlex.quote(f"localhost/{image.slug}-base:{split.base_key.removeprefix('base-')[:20]}")
    source = shlex.quote(f"oci:refs/{split.base_key}:{split.base_key}")
    code = shlex.quote(f"{image.store}/blobs/sha256/{split.code_hex}")
    target, part = shlex.quote(base.target), shlex.quote(base.target + ".part")
    app = WORKDIR.strip("/")
    only_app = (
        f"awk '!/^(\\.\\/)?{app}(\\/|$)/ || /(^|\\/)\\.wh\\./ || /(^|\\/)\\.\\.(\\/|$)/ "
        "{ bad = 1 } END { exit bad }'"
    )
    steps = [
        f"{{ test -d {q_base} || {{ ref=$(cd {shlex.quote(image.store)} && podman pull -q {source}) "
        f'&& podman tag "$ref" {base_ref} && rm -rf {q_base_part} && ch-convert -i podman {base_ref} {q_base_part} '
        f"&& mkdir -p {q_base_part}{MOUNT} && mv {q_base_part} {q_base}; }}; }}",
        f"tar -tzf {code} | {only_app}",
        f"test -d {q_base}/{app} && ! test -L {q_base}/{app}",
        f"rm -rf {part}",
        f"cp -al {q_base} {part}",
        f"tar -xzf {code} -C {part} --no-same-owner",
    ]
    if gpu:
        steps.append(f"ch-fromhost --nvidia {part}")
    steps += [f"rm -rf {target}", f"mv {part} {target}"]
    return " && ".join(steps)


def run_argv(
    image: Image, run_dir: str, env_file: str, gpu: bool = False, entrypoint: list[str] | None = None
) -> list[str]:
    """argv that runs one stage container on the run directory with one env file.

    Nothing secret is ever on this line: the env file (0600) carries the configuration.
    """
    bind = f"{run_dir}:{MOUNT}"
    if image.runtime in ("apptainer", "singularity"):
        # --cleanenv: the container sees only the env file, not the job's environment;
        # --no-home: nothing of the user's home leaks in; --pwd: Docker's WORKDIR is not applied.
        argv = [
            image.runtime,
            "run",
            "--cleanenv",
            "--no-home",
            "--env-file",
            env_file,
            "--bind",
            bind,
            "--pwd",
            WORKDIR,
        ]
        if gpu:
            argv.append("--nv")
        return argv + ["--overlay", f"{image.overlay}:ro", image.target]
    if image.runtime == "podman":
        # keep-id + --user: the stage runs as the cluster user (as under apptainer), so what it writes
        # to /project is the user's, not a subordinate uid's (the images' USER 1000 would be one);
        # host network as apptainer/charliecloud have (rootless slirp needs /dev/net/tun).
        argv = [
            "podman",
            "run",
            "--rm",
            "--userns=keep-id",
            "--user",
            Raw("$(id -u):$(id -g)"),
            "--network=host",
            "--env-file",
            env_file,
            "--volume",
            bind,
            "--workdir",
            WORKDIR,
        ]
        if gpu:
            argv += ["--device", "nvidia.com/gpu=all"]  # CDI, as documented for rootless podman + NVIDIA
        return argv + [image.target]
    if image.runtime == "charliecloud":
        if not entrypoint:
            raise ValueError("charliecloud runs no ENTRYPOINT by itself: pass the stage's entrypoint")
        # Start from an empty environment, apply the image's ENV (--set-env without a file), then ours.
        set_env = f"--set-env={env_file}"
        return [
            "ch-run",
            "--unset-env=*",
            "--set-env",
            Raw(set_env) if isinstance(env_file, Raw) else set_env,
            f"--bind={bind}",
            f"--cd={WORKDIR}",
            image.target,
            "--",
            *entrypoint,
        ]
    raise ValueError(f"mlops.toml cluster.runtime: {image.runtime!r} is not one of {', '.join(RUNTIMES)}")
