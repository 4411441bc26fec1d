"""The builders (buildah, BuildKit, kaniko, img): build one stage image, write it as a docker-archive
tar (what every builder can write; mlops.images.layout turns it into content-addressed OCI blobs) and
push it to the registry. `argv` is what `build` runs; the unit tests read it per builder.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import stages
from .errors import BuildError
from .registry import is_loopback, split_ref

if TYPE_CHECKING:
    from .options import BuildOptions

BUILDERS = ("buildah", "buildkit", "kaniko", "img")


def _run(argv: list[str], what: str, stdin: str | None = None, env: dict | None = None) -> str:
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise BuildError(
            f"{what}: {argv[0]} is not installed in this job image. Fix: use the builder's "
            f"job image (override .mlops-builder-<name>'s image: in .gitlab/ci/build.yml) or install {argv[0]}"
        ) from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise BuildError(f"{what} failed (exit {proc.returncode}): {shlex.join(argv)}\n{tail}")
    return proc.stdout


@dataclass
class Target:
    stage: stages.Stage
    key: str
    archive_ref: str  # the name:tag the archive carries (what `podman load` shows)
    remote_ref: str | None  # <registry image>/<name>:<tag>, None when not pushing
    tar: Path  # uncompressed archive the builder writes (gzipped afterwards)


class Builder:
    """One builder: build the image, write `target.tar` (docker-archive) and push `target.remote_ref`."""

    name = ""

    def __init__(self, s: BuildOptions):
        self.s = s

    def build_args(self) -> list[tuple[str, str]]:
        return [("BASE_IMAGE", self.s.base_image), ("VCS_REF", self.s.commit), ("SOURCE_URL", self.s.source_url)]

    def login(self) -> None:
        """Registry login with CI_REGISTRY_USER/PASSWORD from the environment (password via stdin)."""

    def build(self, t: Target) -> None:
        raise NotImplementedError

    def argv(self, t: Target) -> list[list[str]]:
        """The commands `build` runs (also what the unit tests check for each builder)."""
        raise NotImplementedError


class Buildah(Builder):
    """buildah with chroot isolation: no daemon, no privileges, layer cache in its own store."""

    name = "buildah"

    def _tls(self, ref: str) -> list[str]:
        return ["--tls-verify=false"] if is_loopback(split_ref(ref)[0]) else []

    def login(self) -> None:
        registry, user = os.environ.get("CI_REGISTRY"), os.environ.get("CI_REGISTRY_USER")
        password = os.environ.get("CI_REGISTRY_PASSWORD")
        if self.s.registry_image and registry and user and password:
            _run(
                ["buildah", "login", *self._tls(registry + "/x:y"), "--username", user, "--password-stdin", registry],
                "buildah login",
                stdin=password,
            )

    def argv(self, t: Target) -> list[list[str]]:
        ctx = self.s.root / t.stage.context
        # A CI job starts with an empty buildah store: without a layer cache from the registry, every
        # rebuild would run `pip install` again and give the dependency layer a new digest, which a
        # deploy would then ship again. --cache-from/--cache-to keep that layer (and its digest).
        cache = []
        if t.remote_ref:
            repo = t.remote_ref.rsplit(":", 1)[0] + "-cache"
            cache = [*self._tls(t.remote_ref), "--cache-from", repo, "--cache-to", repo]
        cmds = [
            [
                "buildah",
                "build",
                "--layers",
                "--isolation",
                "chroot",
                *cache,
                *[f"--build-arg={k}={v}" for k, v in self.build_args()],
                *self.s.extra_args,
                "-f",
                str(self.s.root / t.stage.dockerfile),
                "-t",
                t.archive_ref,
                str(ctx),
            ],
            ["buildah", "push", "--quiet", t.archive_ref, f"docker-archive:{t.tar}:{t.archive_ref}"],
        ]
        if t.remote_ref:
            cmds.append(
                ["buildah", "push", "--quiet", *self._tls(t.remote_ref), t.archive_ref, f"docker://{t.remote_ref}"]
            )
        return cmds

    def build(self, t: Target) -> None:
        env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
        for argv in self.argv(t):
            _run(argv, f"{t.stage.name}: {argv[1]}", env=env)


class _DockerConfigBuilder(Builder):
    """Builders that read registry credentials from $DOCKER_CONFIG/config.json (kaniko, buildkit)."""

    def _with_docker_config(self, argvs: list[list[str]], what: str, env_extra: dict | None = None) -> None:
        registry, user = os.environ.get("CI_REGISTRY"), os.environ.get("CI_REGISTRY_USER")
        password = os.environ.get("CI_REGISTRY_PASSWORD")
        with tempfile.TemporaryDirectory(prefix="mlops-docker-config-") as tmp:
            os.chmod(tmp, 0o700)
            env = {**os.environ, **(env_extra or {})}
            if registry and user and password:
                auth = base64.b64encode(f"{user}:{password}".encode()).decode()
                path = Path(tmp) / "config.json"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # removed with tmp
                with os.fdopen(fd, "w") as fh:
                    json.dump({"auths": {registry: {"auth": auth}}}, fh)
                env["DOCKER_CONFIG"] = tmp
            for argv in argvs:
                _run(argv, what, env=env)


class Kaniko(_DockerConfigBuilder):
    """kaniko (the maintained fork): builds in its own container filesystem, writes tar and pushes at once."""

    name = "kaniko"

    def argv(self, t: Target) -> list[list[str]]:
        dest = ["--destination", t.remote_ref] if t.remote_ref else ["--no-push", "--destination", t.archive_ref]
        insecure = ["--insecure"] if t.remote_ref and is_loopback(split_ref(t.remote_ref)[0]) else []
        return [
            [
                "/kaniko/executor",
                "--context",
                f"dir://{self.s.root / t.stage.context}",
                "--dockerfile",
                str(self.s.root / t.stage.dockerfile),
                "--cache=false",
                *[f"--build-arg={k}={v}" for k, v in self.build_args()],
                *self.s.extra_args,
                *dest,
                *insecure,
                "--tar-path",
                str(t.tar),
                "--cleanup",
            ]
        ]

    def build(self, t: Target) -> None:
        self._with_docker_config(self.argv(t), f"{t.stage.name}: kaniko")


class Buildkit(_DockerConfigBuilder):
    """Rootless BuildKit through buildctl-daemonless.sh (starts a private buildkitd per call)."""

    name = "buildkit"

    def argv(self, t: Target) -> list[list[str]]:
        ctx, dockerfile = self.s.root / t.stage.context, self.s.root / t.stage.dockerfile
        outputs = [f"type=docker,name={t.archive_ref},dest={t.tar}"]
        if t.remote_ref:
            insecure = ",registry.insecure=true" if is_loopback(split_ref(t.remote_ref)[0]) else ""
            outputs.insert(0, f"type=image,name={t.remote_ref},push=true{insecure}")
        return [
            [
                "buildctl-daemonless.sh",
                "build",
                "--frontend",
                "dockerfile.v0",
                "--local",
                f"context={ctx}",
                "--local",
                f"dockerfile={dockerfile.parent}",
                "--opt",
                f"filename={dockerfile.name}",
                *[f"--opt=build-arg:{k}={v}" for k, v in self.build_args()],
                *self.s.extra_args,
                *[arg for out in outputs for arg in ("--output", out)],
            ]
        ]

    def build(self, t: Target) -> None:
        # No process sandbox: the job container is the sandbox (BuildKit's documented rootless setup).
        self._with_docker_config(
            self.argv(t),
            f"{t.stage.name}: buildkit",
            {"BUILDKITD_FLAGS": os.environ.get("BUILDKITD_FLAGS", "--oci-worker-no-process-sandbox")},
        )


class Img(Builder):
    """genuinetools/img: unmaintained since 2020, kept for groups whose runners already use it."""

    name = "img"

    def login(self) -> None:
        registry, user = os.environ.get("CI_REGISTRY"), os.environ.get("CI_REGISTRY_USER")
        password = os.environ.get("CI_REGISTRY_PASSWORD")
        if self.s.registry_image and registry and user and password:
            _run(["img", "login", "-u", user, "--password-stdin", registry], "img login", stdin=password)

    def argv(self, t: Target) -> list[list[str]]:
        cmds = [
            [
                "img",
                "build",
                "-t",
                t.archive_ref,
                "-f",
                str(self.s.root / t.stage.dockerfile),
                *[f"--build-arg={k}={v}" for k, v in self.build_args()],
                *self.s.extra_args,
                str(self.s.root / t.stage.context),
            ],
            ["img", "save", "-o", str(t.tar), t.archive_ref],
        ]
        if t.remote_ref:
            cmds += [["img", "tag", t.archive_ref, t.remote_ref], ["img", "push", t.remote_ref]]
        return cmds

    def build(self, t: Target) -> None:
        for argv in self.argv(t):
            _run(argv, f"{t.stage.name}: img {argv[1]}")


BUILDER_CLASSES = {cls.name: cls for cls in (Buildah, Buildkit, Kaniko, Img)}
