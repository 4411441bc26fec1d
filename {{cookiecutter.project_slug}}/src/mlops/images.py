"""`mlops build`: build, save and push the stage images (params, data, model) without a daemon.

For each stage of mlops.stages.STAGES:
  1. its input key = SHA-256 over the stage's inputs (Dockerfile + context files) and base image;
  2. if the build cache holds an archive with that key, reuse it: no rebuild, no re-save, and the
     registry tag for this commit is a manifest copy of the cached image's tag (no blobs move);
  3. otherwise build it with the chosen builder, save `images/<name>.tar.gz` (a gzipped
     docker-archive: what `podman load`, `apptainer build x.sif docker-archive:...` and
     `ch-convert` read) and push `<registry image>/<name>:<tag>`.
Finally it writes the manifest `images/images.json`, which `mlops deploy` reads:

    {"version": 1, "commit": ..., "builder": ..., "base_image": ...,
     "images": {"<name>": {"archive": "images/<name>.tar.gz", "digest": "sha256:<image id>",
                           "input_key": "<sha256 hex>", "registry_ref": "<repo>/<name>:<tag>" | null,
                           "registry_digest": "sha256:<manifest digest>" | null,
                           "archive_ref": "<name:tag inside the archive>", "built": true|false,
                           "built_commit": "<commit that built it>", "seconds": 1.2}}}

`digest` is the image id (the config digest): the same for every copy of one build, in the
archive, the registry and a runtime's store, so deploy can key the cluster's copies by it.

Why a content key instead of GitLab's `cache:key:files`: that hashes at most two files and no
directories, while an image depends on its whole context. The runner cache only stores the
archives; the decision is made here, and the same command works on a laptop.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import config as config_mod
from . import stages
from .errors import MlopsError

MANIFEST = "images.json"
KEY_VERSION = "mlops-images-1"     # bump when the key recipe changes, so old cache entries miss
BUILDERS = ("buildah", "buildkit", "kaniko", "img")
# Environment knobs (documented in the README's pipeline section).
ENV_BASE_IMAGE = "MLOPS_BASE_IMAGE"          # e.g. a registry mirror / GitLab dependency proxy
ENV_EXTRA_ARGS = "MLOPS_BUILD_EXTRA_ARGS"    # extra builder arguments, e.g. a CA bundle mount
_SKIP_PARTS = {"__pycache__", ".git", ".pytest_cache", ".mypy_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


class BuildError(MlopsError):
    """A build, save or push failed (exit 1), or the setup is wrong (bad_input: exit 2).

    The message says which image and step, the tool's output, or the field to fix.
    """

    def __init__(self, message: str, bad_input: bool = False):
        super().__init__(message)
        self.bad_input, self.exit_code = bad_input, (2 if bad_input else 1)


# ---------------------------------------------------------------- input keys

def _input_files(root: Path, stage: stages.Stage) -> list[Path]:
    files: set[Path] = set()
    paths = [*stage.inputs, stage.dockerfile]
    ignore = Path(stage.context) / ".dockerignore"    # it decides what the context holds
    if (root / ignore).is_file():
        paths.append(str(ignore))
    for rel in paths:
        path = root / rel
        if path.is_file():
            files.add(path)
        elif path.is_dir():
            for sub in path.rglob("*"):
                if sub.is_file() and not (_SKIP_PARTS & set(sub.relative_to(root).parts)) \
                        and not sub.name.endswith(_SKIP_SUFFIXES):
                    files.add(sub)
        else:
            raise BuildError(f"{stage.name}: input {rel} does not exist (stages.STAGES lists it)", bad_input=True)
    return sorted(files)


def input_key(root: Path, stage: stages.Stage, base_image: str) -> str:
    """SHA-256 over the image's inputs: file names, executable bits and contents, plus the base image."""
    digest = hashlib.sha256(f"{KEY_VERSION}\0{stage.name}\0{stage.context}\0{base_image}\0".encode())
    for path in _input_files(root, stage):
        rel = path.relative_to(root).as_posix()
        executable = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"{rel}\0{executable}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# ---------------------------------------------------------------- settings

@dataclass
class Settings:
    root: Path
    builder: str
    base_image: str
    registry_image: str | None      # e.g. $CI_REGISTRY_IMAGE; None = do not push
    tag: str                        # e.g. the commit sha
    out_dir: Path                   # images/ (archives + manifest: the CI artifacts)
    cache_dir: Path                 # .mlops-cache/images (the runner cache)
    extra_args: list[str]
    commit: str
    source_url: str


def settings(root: Path | None = None, builder: str | None = None, push: bool = True,
             registry_image: str | None = None, tag: str | None = None,
             out_dir: Path | None = None, cache_dir: Path | None = None) -> Settings:
    """Settings from mlops.toml, overridden by CI variables and arguments (in that order)."""
    cfg = config_mod.load(root)
    configured = cfg["build"].get("builder", "buildah")
    if builder and builder != configured:
        raise BuildError(f"builder {builder!r} (the CI input / --builder) differs from mlops.toml "
                         f"build.builder = {configured!r}. Fix: make them the same (mlops.toml is "
                         f"what the project uses; the CI input only picks the job image)", bad_input=True)
    builder = builder or configured
    if builder not in BUILDERS:
        raise BuildError(f"mlops.toml build.builder = {builder!r} is not one of {', '.join(BUILDERS)}", bad_input=True)
    commit = os.environ.get("CI_COMMIT_SHA") or _git_head(cfg.root)
    registry_image = (registry_image or os.environ.get("MLOPS_REGISTRY_IMAGE")
                      or os.environ.get("CI_REGISTRY_IMAGE") or None)
    if not push:
        registry_image = None
    base_image = os.environ.get(ENV_BASE_IMAGE) or cfg["build"].get("base_image")
    if not base_image:
        raise BuildError("mlops.toml build.base_image is empty. Fix: set it, e.g. \"python:3.11-slim\"", bad_input=True)
    try:
        extra = shlex.split(os.environ.get(ENV_EXTRA_ARGS, ""))
    except ValueError as exc:
        raise BuildError(f"{ENV_EXTRA_ARGS}: {exc}. Fix: quote it as you would in a shell", bad_input=True) from None
    return Settings(
        root=cfg.root, builder=builder, base_image=base_image,
        registry_image=registry_image.rstrip("/") if registry_image else None,
        tag=tag or os.environ.get("CI_COMMIT_SHA") or commit[:12] or "latest",
        out_dir=Path(out_dir or cfg.root / "images"),
        cache_dir=Path(cache_dir or cfg.root / ".mlops-cache" / "images"),
        extra_args=extra, commit=commit,
        source_url=os.environ.get("CI_PROJECT_URL", "unknown"))


def _git_head(root: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------- registry (HTTP API v2)

_MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"))


def split_ref(ref: str) -> tuple[str, str, str]:
    """'host[:port]/path/name:tag' -> (host, path/name, tag)."""
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    if not host or not repo:
        raise BuildError(f"{ref!r} is not a registry reference host/path/name:tag", bad_input=True)
    return host, repo, tag


def is_loopback(host: str) -> bool:
    """Plain HTTP (and no TLS verification) only for a registry on this machine's loopback."""
    name = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") else host[1:host.index("]")]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Registry:
    """Just enough of the registry API for manifest copies, with GitLab's token auth (CI_REGISTRY_*)."""

    def __init__(self, host: str):
        self.host = host
        self.base = f"{'http' if is_loopback(host) else 'https'}://{host}"
        self._token: str | None = None

    def _basic(self) -> str | None:
        user, password = os.environ.get("CI_REGISTRY_USER"), os.environ.get("CI_REGISTRY_PASSWORD")
        if user and password:
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return None

    def _request(self, method: str, repo: str, tag: str, body: bytes | None = None,
                 content_type: str | None = None, retry: bool = True):
        req = urllib.request.Request(f"{self.base}/v2/{repo}/manifests/{tag}", data=body, method=method)
        req.add_header("Accept", _MANIFEST_TYPES)
        if content_type:
            req.add_header("Content-Type", content_type)
        if self._token:
            req.add_header("Authorization", self._token)
        try:
            return urllib.request.urlopen(req, timeout=60)
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate", "")
            if exc.code == 401 and retry and challenge:
                self._authenticate(challenge, repo)
                return self._request(method, repo, tag, body, content_type, retry=False)
            raise

    def _authenticate(self, challenge: str, repo: str) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            self._token = self._basic()
            return
        fields = dict(part.split("=", 1) for part in params.replace('"', "").split(",") if "=" in part)
        query = urllib.parse.urlencode({"service": fields.get("service", ""),
                                        "scope": f"repository:{repo}:pull,push"})
        req = urllib.request.Request(f"{fields['realm']}?{query}")
        if self._basic():
            req.add_header("Authorization", self._basic())
        with urllib.request.urlopen(req, timeout=60) as resp:
            data = json.load(resp)
        self._token = "Bearer " + (data.get("token") or data.get("access_token", ""))

    def manifest(self, repo: str, tag: str) -> tuple[bytes, str, str]:
        with self._request("GET", repo, tag) as resp:
            body = resp.read()
            return body, resp.headers.get("Content-Type", ""), resp.headers.get("Docker-Content-Digest", "")

    def digest(self, repo: str, tag: str) -> str | None:
        try:
            body, _, digest = self.manifest(repo, tag)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return digest or "sha256:" + hashlib.sha256(body).hexdigest()

    def copy(self, source_ref: str, dest_ref: str) -> str:
        """Tag `dest_ref` with the manifest of `source_ref` (same repository host); returns its digest."""
        _, src_repo, src_tag = split_ref(source_ref)
        _, dst_repo, dst_tag = split_ref(dest_ref)
        if src_repo != dst_repo:
            raise BuildError(f"cannot copy {source_ref} to another repository ({dest_ref}) without blobs")
        body, content_type, digest = self.manifest(src_repo, src_tag)
        with self._request("PUT", dst_repo, dst_tag, body, content_type):
            pass
        return digest or "sha256:" + hashlib.sha256(body).hexdigest()


# ---------------------------------------------------------------- builders

def _run(argv: list[str], what: str, stdin: str | None = None, env: dict | None = None) -> str:
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise BuildError(f"{what}: {argv[0]} is not installed in this job image. Fix: use the builder's "
                         f"job image (the builder_image input) or install {argv[0]}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise BuildError(f"{what} failed (exit {proc.returncode}): {shlex.join(argv)}\n{tail}")
    return proc.stdout


@dataclass
class Target:
    stage: stages.Stage
    key: str
    archive_ref: str          # the name:tag the archive carries (what `podman load` shows)
    remote_ref: str | None    # <registry image>/<name>:<tag>, None when not pushing
    tar: Path                 # uncompressed archive the builder writes (gzipped afterwards)


class Builder:
    """One builder: build the image, write `target.tar` (docker-archive) and push `target.remote_ref`."""
    name = ""

    def __init__(self, s: Settings):
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
            _run(["buildah", "login", *self._tls(registry + "/x:y"), "--username", user,
                  "--password-stdin", registry], "buildah login", stdin=password)

    def argv(self, t: Target) -> list[list[str]]:
        ctx = self.s.root / t.stage.context
        cmds = [["buildah", "build", "--layers", "--isolation", "chroot",
                 *[f"--build-arg={k}={v}" for k, v in self.build_args()],
                 *self.s.extra_args, "-f", str(self.s.root / t.stage.dockerfile), "-t", t.archive_ref, str(ctx)],
                ["buildah", "push", "--quiet", t.archive_ref, f"docker-archive:{t.tar}:{t.archive_ref}"]]
        if t.remote_ref:
            cmds.append(["buildah", "push", "--quiet", *self._tls(t.remote_ref), t.archive_ref,
                         f"docker://{t.remote_ref}"])
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
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)   # removed with tmp
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
        return [["/kaniko/executor", "--context", f"dir://{self.s.root / t.stage.context}",
                 "--dockerfile", str(self.s.root / t.stage.dockerfile), "--cache=false",
                 *[f"--build-arg={k}={v}" for k, v in self.build_args()], *self.s.extra_args,
                 *dest, *insecure, "--tar-path", str(t.tar), "--cleanup"]]

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
        return [["buildctl-daemonless.sh", "build", "--frontend", "dockerfile.v0",
                 "--local", f"context={ctx}", "--local", f"dockerfile={dockerfile.parent}",
                 "--opt", f"filename={dockerfile.name}",
                 *[f"--opt=build-arg:{k}={v}" for k, v in self.build_args()], *self.s.extra_args,
                 *[arg for out in outputs for arg in ("--output", out)]]]

    def build(self, t: Target) -> None:
        # No process sandbox: the job container is the sandbox (BuildKit's documented rootless setup).
        self._with_docker_config(self.argv(t), f"{t.stage.name}: buildkit",
                                 {"BUILDKITD_FLAGS": os.environ.get("BUILDKITD_FLAGS",
                                                                    "--oci-worker-no-process-sandbox")})


class Img(Builder):
    """genuinetools/img: unmaintained since 2020, kept for groups whose runners already use it."""
    name = "img"

    def login(self) -> None:
        registry, user = os.environ.get("CI_REGISTRY"), os.environ.get("CI_REGISTRY_USER")
        password = os.environ.get("CI_REGISTRY_PASSWORD")
        if self.s.registry_image and registry and user and password:
            _run(["img", "login", "-u", user, "--password-stdin", registry], "img login", stdin=password)

    def argv(self, t: Target) -> list[list[str]]:
        cmds = [["img", "build", "-t", t.archive_ref, "-f", str(self.s.root / t.stage.dockerfile),
                 *[f"--build-arg={k}={v}" for k, v in self.build_args()], *self.s.extra_args,
                 str(self.s.root / t.stage.context)],
                ["img", "save", "-o", str(t.tar), t.archive_ref]]
        if t.remote_ref:
            cmds += [["img", "tag", t.archive_ref, t.remote_ref], ["img", "push", t.remote_ref]]
        return cmds

    def build(self, t: Target) -> None:
        for argv in self.argv(t):
            _run(argv, f"{t.stage.name}: img {argv[1]}")


BUILDER_CLASSES = {cls.name: cls for cls in (Buildah, Buildkit, Kaniko, Img)}


# ---------------------------------------------------------------- archives and the cache

def archive_image_id(tar: Path) -> str:
    """The image id (config digest) recorded in a docker-archive's manifest.json."""
    with tarfile.open(tar) as archive:
        member = archive.extractfile("manifest.json")
        if member is None:
            raise BuildError(f"{tar}: no manifest.json (not a docker-archive)")
        entries = json.load(member)
    config = entries[0]["Config"]          # "<hex>.json" or "blobs/sha256/<hex>"
    return "sha256:" + Path(config).name.removesuffix(".json")


def _gzip(src: Path, dest: Path) -> None:
    """Gzip without a timestamp, so one image always gives the same archive bytes."""
    tmp = dest.with_name(dest.name + ".part")
    with src.open("rb") as fin, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    os.replace(tmp, dest)


def _place(src: Path, dest: Path) -> None:
    """Put a copy of `src` at `dest` (a hard link when possible: no bytes are rewritten)."""
    tmp = dest.with_name(dest.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _cache_paths(s: Settings, name: str, key: str) -> tuple[Path, Path]:
    return s.cache_dir / name / f"{key}.tar.gz", s.cache_dir / name / f"{key}.json"


def _prune_cache(s: Settings, name: str, keep: str) -> None:
    """Keep one entry per image (the current one): the cache must not grow with every change."""
    for path in (s.cache_dir / name).glob("*"):
        if not path.name.startswith(keep):
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------- the build

def build(s: Settings, names: list[str] | None = None, force: bool = False, out=sys.stderr) -> dict:
    """Build/reuse, save and push the images; write and return the manifest."""
    unknown = [n for n in names or [] if n not in stages.BY_NAME]
    if unknown:
        raise BuildError(f"unknown image(s) {', '.join(unknown)}: choose from {', '.join(stages.BY_NAME)}", bad_input=True)
    selected = [st for st in stages.STAGES if not names or st.name in names]
    builder = BUILDER_CLASSES[s.builder](s)
    registry = Registry(split_ref(s.registry_image + "/x:y")[0]) if s.registry_image else None
    s.out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = s.out_dir / MANIFEST
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest = {"version": 1, "commit": s.commit, "builder": s.builder, "base_image": s.base_image,
                "images": dict(previous.get("images", {})) if names else {}}
    if s.registry_image:
        builder.login()
    slug = config_mod.load(s.root).slug
    for stage in selected:
        started = time.monotonic()
        key = input_key(s.root, stage, s.base_image)
        remote = f"{s.registry_image}/{stage.name}:{s.tag}" if s.registry_image else None
        archive = s.out_dir / f"{stage.name}.tar.gz"
        cached_archive, cached_meta = _cache_paths(s, stage.name, key)
        entry = None
        if not force and cached_archive.is_file() and cached_meta.is_file():
            entry = _reuse(s, registry, stage, key, remote, archive, cached_archive, cached_meta, out)
        if entry is None:
            entry = _build_one(s, builder, registry, stage, key, slug, remote, archive, out)
            cached_archive.parent.mkdir(parents=True, exist_ok=True)
            _place(archive, cached_archive)
            cached_meta.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
            _prune_cache(s, stage.name, key)
        entry["seconds"] = round(time.monotonic() - started, 2)
        manifest["images"][stage.name] = entry
        what = "built" if entry["built"] else "cached"
        print(f"{stage.name:<7} {what:<6} {entry['seconds']:7.1f}s  key {key[:12]}  {entry['digest'][:19]}"
              f"  {entry['registry_ref'] or '(not pushed)'}", file=out, flush=True)
    tmp = manifest_path.with_name(MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, manifest_path)
    return manifest


def _reuse(s, registry, stage, key, remote, archive, cached_archive, cached_meta, out) -> dict | None:
    """A cache hit: place the cached archive and tag this commit in the registry by manifest copy."""
    meta = json.loads(cached_meta.read_text())
    registry_digest = None
    if remote:
        source = meta.get("registry_ref")
        try:
            if not source or split_ref(source)[:2] != split_ref(remote)[:2]:
                raise BuildError("the cached image was pushed to another repository")
            registry_digest = registry.copy(source, remote)
        except (BuildError, urllib.error.URLError, OSError) as exc:
            print(f"{stage.name}: cached archive found but {exc}; rebuilding", file=out)
            return None
    _place(cached_archive, archive)
    return {**meta, "archive": archive.relative_to(s.root).as_posix() if archive.is_relative_to(s.root)
            else str(archive), "registry_ref": remote, "registry_digest": registry_digest,
            "input_key": key, "built": False}


def _build_one(s, builder, registry, stage, key, slug, remote, archive, out) -> dict:
    archive_ref = f"localhost/{slug}-{stage.name}:{key[:16]}"
    with tempfile.TemporaryDirectory(prefix=f".{stage.name}-", dir=s.out_dir) as tmp:
        target = Target(stage, key, archive_ref, remote, Path(tmp) / f"{stage.name}.tar")
        print(f"{stage.name}: building with {s.builder} (key {key[:12]})", file=out, flush=True)
        builder.build(target)
        image_id = archive_image_id(target.tar)
        _gzip(target.tar, archive)
    registry_digest = registry.digest(*split_ref(remote)[1:]) if remote else None
    return {"archive": archive.relative_to(s.root).as_posix() if archive.is_relative_to(s.root) else str(archive),
            "digest": image_id, "input_key": key, "registry_ref": remote, "registry_digest": registry_digest,
            "archive_ref": archive_ref, "built": True, "built_commit": s.commit}


def keys(s: Settings) -> dict[str, str]:
    """name -> input key, for `mlops images keys` (what decides a rebuild)."""
    return {stage.name: input_key(s.root, stage, s.base_image) for stage in stages.STAGES}


def read_manifest(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BuildError(f"{path}: no images manifest. Fix: run `mlops build` first (the build job "
                         f"hands images/ to later jobs as artifacts)") from None
